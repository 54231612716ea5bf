# Prints the size of a built binary (run by ember-deploy's POST_BUILD step: cmake -DFILE=... -P).
file(SIZE "${FILE}" _bytes)
math(EXPR _kib "${_bytes} / 1024")
get_filename_component(_name "${FILE}" NAME)
message(STATUS "${_name}: ${_bytes} bytes (${_kib} KiB), statically linked against libember.a")
