# Install rules: the libraries, the public headers under include/ember/, the CMake package
# (lib/cmake/Ember), the pkg-config file (lib/pkgconfig/ember.pc) and, from tools' own folders,
# the command-line tools in bin/. Components: runtime (libember.so.N), development (headers,
# libember.a, libember.so link, CMake and pkg-config files), tools. `cpack -G DEB` makes one
# Debian package of each: libember<N>, libember-dev, ember-tools.
if(NOT EMBER_INSTALL)
  return()
endif()
include(CMakePackageConfigHelpers)

set(_ember_install_targets ember)
if(TARGET ember_shared)
  list(APPEND _ember_install_targets ember_shared)
endif()
install(TARGETS ${_ember_install_targets} EXPORT EmberTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT runtime NAMELINK_COMPONENT development
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT development
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})

foreach(_src _name IN ZIP_LISTS EMBER_PUBLIC_HEADERS EMBER_PUBLIC_HEADER_NAMES)
  get_filename_component(_dir ${_name} DIRECTORY)
  install(FILES ${PROJECT_SOURCE_DIR}/${_src} DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/ember/${_dir}
          COMPONENT development)
endforeach()
install(FILES ${PROJECT_BINARY_DIR}/include/ember/config.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/ember
        COMPONENT development)

# Ember::distributed (where MPI was found): libember_distributed.a, its headers and targets of
# their own, which the package loads for find_package(Ember COMPONENTS distributed).
if(TARGET ember_distributed)
  install(TARGETS ember_distributed EXPORT EmberDistributedTargets
    ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT development
    INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
  list(TRANSFORM EMBER_DISTRIBUTED_HEADERS PREPEND ${PROJECT_SOURCE_DIR}/ OUTPUT_VARIABLE _ember_dist_headers)
  install(FILES ${_ember_dist_headers} DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/ember/train/distributed
          COMPONENT development)
endif()

set(_ember_cmake_dir ${CMAKE_INSTALL_LIBDIR}/cmake/Ember)
install(EXPORT EmberTargets NAMESPACE Ember:: DESTINATION ${_ember_cmake_dir} COMPONENT development)
if(TARGET ember_distributed)
  install(EXPORT EmberDistributedTargets NAMESPACE Ember:: DESTINATION ${_ember_cmake_dir} COMPONENT development)
endif()
configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/EmberConfig.cmake.in
  ${PROJECT_BINARY_DIR}/package/EmberConfig.cmake INSTALL_DESTINATION ${_ember_cmake_dir})
# 0.x releases may change the API between minor versions, so a request for 0.1 accepts 0.1.*.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/package/EmberConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/package/EmberConfig.cmake ${PROJECT_BINARY_DIR}/package/EmberConfigVersion.cmake
        DESTINATION ${_ember_cmake_dir} COMPONENT development)

# pkg-config: the prefix is found relative to the .pc file, so an installed tree can be moved
# (or unpacked from a .deb into any root) and still be found through PKG_CONFIG_PATH.
file(RELATIVE_PATH EMBER_PC_PREFIX /root/${CMAKE_INSTALL_LIBDIR}/pkgconfig /root)
# A static link of a CUDA build adds the static CUDA runtime and what it needs (dlopen, clock_gettime,
# threads); cuBLAS and cuDNN are opened at run time, so they are never linked. A shared link needs
# nothing of CUDA's.
set(EMBER_PC_CUDA_LIBS "")
if(EMBER_WITH_CUDA)
  set(EMBER_PC_CUDA_LIBS " -L${CUDAToolkit_LIBRARY_DIR} -lcudart_static -ldl -lrt -lpthread")
endif()
configure_file(${CMAKE_CURRENT_LIST_DIR}/ember.pc.in ${PROJECT_BINARY_DIR}/package/ember.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/package/ember.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig
        COMPONENT development)

# --- Debian packages (cpack -G DEB in the build folder) --------------------------------------
if(NOT EMBER_TOP_LEVEL)
  return()
endif()
set(CPACK_PACKAGE_NAME ember)
set(CPACK_PACKAGE_VENDOR "Ember developers")
set(CPACK_PACKAGE_CONTACT "Ember developers")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "lean C++ deep-learning runtime")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL runtime development tools)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)         # Depends of the binaries from dpkg-shlibdeps
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)   # shlibs file and ldconfig trigger for libemberN
set(CPACK_DEBIAN_PACKAGE_SECTION libs)
set(CPACK_DEBIAN_RUNTIME_PACKAGE_NAME libember${EMBER_SOVERSION})
set(CPACK_DEBIAN_RUNTIME_DESCRIPTION "Ember deep-learning runtime - shared library
 Tensors, autograd, CPU kernels, layers, optimizers, the trainer and checkpoints.")
set(CPACK_DEBIAN_DEVELOPMENT_PACKAGE_NAME libember-dev)
set(CPACK_DEBIAN_DEVELOPMENT_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_DEVELOPMENT_PACKAGE_DEPENDS "libember${EMBER_SOVERSION} (= ${PROJECT_VERSION}), zlib1g-dev")
set(CPACK_DEBIAN_DEVELOPMENT_DESCRIPTION "Ember deep-learning runtime - development files
 Headers (<ember/ember.h>, <ember/c.h>), the static library, the CMake package and pkg-config file.")
if(TARGET ember_distributed)
  # Ember::distributed (find_package(Ember COMPONENTS distributed)) needs MPI's development files.
  set(CPACK_DEBIAN_DEVELOPMENT_PACKAGE_SUGGESTS "libopenmpi-dev")
endif()
set(CPACK_DEBIAN_TOOLS_PACKAGE_NAME ember-tools)
set(CPACK_DEBIAN_TOOLS_PACKAGE_SECTION science)
set(CPACK_DEBIAN_TOOLS_DESCRIPTION "Ember deep-learning runtime - command-line tools
 ember-ckpt (inspect, verify, diff and export checkpoints), ember-run (run a stored model over
 .npy arrays) and the MNIST autoencoder example.")
include(CPack)
