# tests/fakekms: nitrodiag-fake-kms (a fake AWS KMS over HTTPS and a fake IMDSv2 on loopback) used by the KMS client
# tests, the proxy tests and the benchmark. Built into the top of the build tree: ${PROJECT_BINARY_DIR}/nitrodiag-fake-kms.
add_executable(nitrodiag-fake-kms ${CMAKE_CURRENT_LIST_DIR}/fakekms.c)
target_link_libraries(nitrodiag-fake-kms PRIVATE ndcore PkgConfig::SSL PkgConfig::JANSSON pthread)
set_target_properties(nitrodiag-fake-kms PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR})
