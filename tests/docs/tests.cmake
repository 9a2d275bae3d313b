# The worked example of docs/runbooks.md is tested like any runbook, against the simulated host.
add_test(NAME docs.example COMMAND nitrodiag spec ${PROJECT_SOURCE_DIR}/docs/examples/no-debug-enclaves_spec.lua)
set_tests_properties(docs.example PROPERTIES TIMEOUT 120
  ENVIRONMENT "ND_SOURCE_DIR=${PROJECT_SOURCE_DIR};ND_BINARY_DIR=${PROJECT_BINARY_DIR};NITRODIAG_PATH=")
