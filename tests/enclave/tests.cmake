# tests/enclave: the enclave programs beyond the unit tests — they cross-build for aarch64 (cross-aarch64.sh; skipped
# when Debian's crossbuild-essential-arm64 is not installed).
add_test(NAME enclave.cross_aarch64 COMMAND ${CMAKE_CURRENT_LIST_DIR}/cross-aarch64.sh ${PROJECT_SOURCE_DIR})
set_tests_properties(enclave.cross_aarch64 PROPERTIES TIMEOUT 120 SKIP_RETURN_CODE 77)
