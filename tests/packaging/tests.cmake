# tests/packaging: the cheap package checks (the expensive ones — a fresh Debian root, the empty root, aarch64 under
# qemu-user — are `make package-test` and `make cross-test`, results in docs/packaging.md).
#   package.man          the man pages render and name every option of --help, every runbook and every scenario
#   package.completion   bash completion offers what the program lists (runbooks on the search path, args, scenarios)
#   package.install-tree `cmake --install` lays out what the .deb/.rpm carry, and the moved tree finds its share dir
set(_pk ${CMAKE_CURRENT_LIST_DIR})
set(_pk_env "ND_BIN=$<TARGET_FILE:nitrodiag>;ND_PROXY=$<TARGET_FILE:nitrodiag-kms-proxy>;ND_SOURCE_DIR=${PROJECT_SOURCE_DIR};ND_BUILD_DIR=${PROJECT_BINARY_DIR};NITRODIAG_PATH=")
if(ND_MAN)
  add_test(NAME package.man COMMAND sh ${_pk}/check-man.sh ${PROJECT_BINARY_DIR}/packaging/man)
  set_tests_properties(package.man PROPERTIES TIMEOUT 60 ENVIRONMENT "${_pk_env}")
endif()
add_test(NAME package.completion COMMAND bash ${_pk}/check-completion.sh ${PROJECT_SOURCE_DIR}/packaging/nitrodiag.bash-completion)
set_tests_properties(package.completion PROPERTIES TIMEOUT 60 ENVIRONMENT "${_pk_env}")
add_test(NAME package.install-tree COMMAND sh ${_pk}/check-install-tree.sh)
set_tests_properties(package.install-tree PROPERTIES TIMEOUT 120 ENVIRONMENT "${_pk_env}")
