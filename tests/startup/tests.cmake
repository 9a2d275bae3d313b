# tests/startup: nitrodiag does not load libcurl or libarchive (or what they pull in) until a command uses them
# (core/lazylib.c): they are not in the binary's DT_NEEDED, and `--version` maps neither; a bundle (libarchive) and
# the KMS client (libcurl) still work — the bundle and kms tests cover that.
add_test(NAME startup.lazy_libraries
  COMMAND sh -c "! readelf -d \"$1\" | grep -E 'NEEDED.*(libcurl|libarchive)' && LD_DEBUG=files \"$1\" --version 2>&1 >/dev/null | grep -c 'file=' > /dev/null && ! LD_DEBUG=files \"$1\" --version 2>&1 >/dev/null | grep -E 'file=lib(curl|archive)'" sh $<TARGET_FILE:nitrodiag>)
