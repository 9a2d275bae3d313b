# Included at the end of every CMakeLists.txt that adds tests: each test of that directory keeps its caches in the
# build tree, never in the user's home (NITRODIAG_CACHE_DIR: the simulator's padded-EIF PCRs, docs/simulator.md).
# One directory per build, so later runs (and CI after its first) reuse what the first one measured.
get_property(_nd_tests DIRECTORY PROPERTY TESTS)
foreach(_nd_t ${_nd_tests})
  set_property(TEST ${_nd_t} APPEND PROPERTY ENVIRONMENT "NITRODIAG_CACHE_DIR=${PROJECT_BINARY_DIR}/test-cache")
endforeach()
