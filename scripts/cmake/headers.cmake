# Ember's public headers and the <ember/...> include tree.
#
# A public header keeps its place in the repository (runtime/tensor.h) and is spelled with the
# ember/ prefix everywhere (#include "ember/runtime/tensor.h"), in Ember's own sources as in a
# consumer's. The build tree gets that spelling from a generated folder of symbolic links
# (<build>/include/ember/runtime/tensor.h -> the source file); the install tree from the same
# list (P/include/ember/runtime/tensor.h). Headers not listed here (kernels/, the private helpers
# below) are neither linked nor installed, so a consumer cannot reach them.

# Headers of runtime/, nn/, train/ and checkpoint/ that are implementation details.
set(EMBER_PRIVATE_HEADERS
  runtime/block_cache.h       # the caching allocator's internals
  runtime/dispatch.h          # dtype/device dispatch for the op front ends (includes kernels/)
  runtime/op_registry.h       # the op list the tests enumerate
  runtime/parallel_detail.h   # parallel_for's chunk assignment in the backward pass
  train/callbacks_pyformat.h  # Python str.format for checkpoint file names
  train/lr_scheduler/detail.h # shared scheduler state helpers
  checkpoint/format.h         # the byte layout's encoders and decoders
  checkpoint/posix_file.h     # POSIX file helpers
  train/distributed/nccl.h    # Ember::distributed's NCCL calls
  train/distributed/host_buffers.h)  # Ember::distributed's host-shared gradient buffers
# The headers of Ember::distributed (a library of its own over MPI): linked into the include tree
# like the others, installed only with that library.
set(EMBER_DISTRIBUTED_HEADERS
  train/distributed/process_group.h
  train/distributed/ddp.h
  train/distributed/ddp_strategy.h)
# Headers whose public name is not their repository path: the umbrella header and the C API.
set(EMBER_RENAMED_HEADERS
  train/ember.h ember.h
  train/c.h c.h)

# Sets EMBER_PUBLIC_HEADERS (repository paths) and EMBER_PUBLIC_HEADER_NAMES (the same headers'
# paths under include/ember/), and makes include_dir/ember/... links to them and to
# EMBER_DISTRIBUTED_HEADERS.
function(ember_make_include_tree include_dir)
  file(GLOB_RECURSE _all CONFIGURE_DEPENDS RELATIVE ${PROJECT_SOURCE_DIR}
       ${PROJECT_SOURCE_DIR}/runtime/*.h ${PROJECT_SOURCE_DIR}/nn/*.h
       ${PROJECT_SOURCE_DIR}/train/*.h ${PROJECT_SOURCE_DIR}/checkpoint/*.h)
  list(REMOVE_ITEM _all ${EMBER_PRIVATE_HEADERS} ${EMBER_DISTRIBUTED_HEADERS})
  list(SORT _all)
  set(_names "")
  foreach(_h IN LISTS _all EMBER_DISTRIBUTED_HEADERS)
    set(_name ${_h})
    list(FIND EMBER_RENAMED_HEADERS ${_h} _i)
    if(_i GREATER_EQUAL 0)
      math(EXPR _i "${_i} + 1")
      list(GET EMBER_RENAMED_HEADERS ${_i} _name)
    endif()
    list(APPEND _names ${_name})
    set(_link ${include_dir}/ember/${_name})
    get_filename_component(_dir ${_link} DIRECTORY)
    file(MAKE_DIRECTORY ${_dir})
    if(NOT IS_SYMLINK ${_link})
      file(CREATE_LINK ${PROJECT_SOURCE_DIR}/${_h} ${_link} SYMBOLIC)
    endif()
  endforeach()
  # Links left from headers that were removed or made private since the last configure.
  file(GLOB_RECURSE _links LIST_DIRECTORIES false RELATIVE ${include_dir}/ember ${include_dir}/ember/*)
  foreach(_l IN LISTS _links)
    if(IS_SYMLINK ${include_dir}/ember/${_l} AND NOT _l IN_LIST _names)
      file(REMOVE ${include_dir}/ember/${_l})
    endif()
  endforeach()
  list(REMOVE_ITEM _names ${EMBER_DISTRIBUTED_HEADERS})
  set(EMBER_PUBLIC_HEADERS ${_all} PARENT_SCOPE)
  set(EMBER_PUBLIC_HEADER_NAMES ${_names} PARENT_SCOPE)
endfunction()
