# tests/field: the field corpus — outputs users pasted in public threads, each with the cause the thread established
# (docs/diagnosis.md). field.corpus ranks every case with nd.diagnose and prints the score; it fails when the expected
# cause ranks first on fewer than 90 % of the cases or when any nitro-cli code is wrong.
add_test(NAME field.corpus COMMAND nitrodiag spec ${CMAKE_CURRENT_LIST_DIR}/field_spec.lua)
set_tests_properties(field.corpus PROPERTIES TIMEOUT 120
  ENVIRONMENT "ND_SOURCE_DIR=${PROJECT_SOURCE_DIR};ND_BINARY_DIR=${PROJECT_BINARY_DIR};NITRODIAG_PATH=")
add_test(NAME field.example_rule COMMAND nitrodiag spec ${PROJECT_SOURCE_DIR}/docs/examples/rules/sidecar_spec.lua)
set_tests_properties(field.example_rule PROPERTIES TIMEOUT 60
  ENVIRONMENT "ND_SOURCE_DIR=${PROJECT_SOURCE_DIR};ND_BINARY_DIR=${PROJECT_BINARY_DIR};NITRODIAG_PATH=")
