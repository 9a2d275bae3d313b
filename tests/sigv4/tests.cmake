# tests/sigv4: SigV4 checked against botocore's independent signer on random requests (the AWS test-suite vectors
# are in tests/unit/test_sigv4.c). nitrodiag-sigv4-sign is a test-only CLI exposing core/sigv4.c to Python.
add_executable(nitrodiag-sigv4-sign ${CMAKE_CURRENT_LIST_DIR}/sign_cli.c)
target_link_libraries(nitrodiag-sigv4-sign PRIVATE ndcore PkgConfig::JANSSON PkgConfig::SSL)
# Debian's python3 with Debian's python3-botocore (tools/install-deps.sh installs both), not whatever python3 is
# first on PATH: the comparison is against the signer the project depends on.
find_program(ND_DEBIAN_PYTHON3 python3 PATHS /usr/bin NO_DEFAULT_PATH)
if(NOT ND_DEBIAN_PYTHON3)
  find_program(ND_DEBIAN_PYTHON3 python3)
endif()
if(ND_DEBIAN_PYTHON3)
  add_test(NAME sigv4.botocore COMMAND ${ND_DEBIAN_PYTHON3} ${CMAKE_CURRENT_LIST_DIR}/botocore_compare.py
           $<TARGET_FILE:nitrodiag-sigv4-sign> 200)
  set_tests_properties(sigv4.botocore PROPERTIES TIMEOUT 120)
  add_test(NAME sigv4.botocore_client_vs_fakekms COMMAND ${ND_DEBIAN_PYTHON3} ${CMAKE_CURRENT_LIST_DIR}/botocore_fakekms.py
           ${PROJECT_BINARY_DIR}/nitrodiag-fake-kms)
  set_tests_properties(sigv4.botocore_client_vs_fakekms PROPERTIES TIMEOUT 120)
endif()
