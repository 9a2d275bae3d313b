# tests/proxy: nitrodiag-kms-proxy end to end, over unix sockets, against nitrodiag-fake-kms (tests/fakekms) and
# vsock-pingpong --mode kms. One driver program (proxytest.c) runs each scenario; see its header comment.
if(TARGET nitrodiag-fake-kms AND TARGET nitrodiag-kms-proxy)
  add_executable(nitrodiag-proxytest ${CMAKE_CURRENT_LIST_DIR}/proxytest.c)
  target_link_libraries(nitrodiag-proxytest PRIVATE ndcore)
  target_compile_options(nitrodiag-proxytest PRIVATE -Wno-missing-field-initializers)
  set_target_properties(nitrodiag-proxytest PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR})
  foreach(s e2e faults load malformed signals)
    add_test(NAME proxy.${s} COMMAND nitrodiag-proxytest ${s} ${PROJECT_BINARY_DIR})
    set_tests_properties(proxy.${s} PROPERTIES TIMEOUT 180
      ENVIRONMENT "ND_TEST_TMP=${PROJECT_BINARY_DIR}/tests/tmp")
  endforeach()
  if(TARGET vsock-pingpong)
    add_dependencies(nitrodiag-proxytest vsock-pingpong nitrodiag-fake-kms nitrodiag-kms-proxy)
  endif()
endif()
