# tests/proxy: nitrodiag-kms-proxy end to end, over unix sockets, against nitrodiag-fake-kms (tests/fakekms) and
# vsock-pingpong --mode kms. One driver program (proxytest.c) runs each scenario; see its header comment.
if(TARGET nitrodiag-fake-kms AND TARGET nitrodiag-kms-proxy)
  add_executable(nitrodiag-proxytest ${CMAKE_CURRENT_LIST_DIR}/proxytest.c)
  target_link_libraries(nitrodiag-proxytest PRIVATE ndcore pthread)
  target_compile_options(nitrodiag-proxytest PRIVATE -Wno-missing-field-initializers)
  set_target_properties(nitrodiag-proxytest PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR})
  foreach(s e2e faults load malformed signals failclosed flood region)
    add_test(NAME proxy.${s} COMMAND nitrodiag-proxytest ${s} ${PROJECT_BINARY_DIR})
    set_tests_properties(proxy.${s} PROPERTIES TIMEOUT 180
      ENVIRONMENT "ND_TEST_TMP=${PROJECT_BINARY_DIR}/tests/tmp")
  endforeach()
  if(TARGET vsock-pingpong)
    add_dependencies(nitrodiag-proxytest vsock-pingpong nitrodiag-fake-kms nitrodiag-kms-proxy)
  endif()
endif()

# The shipped example config is valid, and it and the docs name only options the program knows (--help is
# generated from the same table as the parser).
if(TARGET nitrodiag-kms-proxy)
  add_test(NAME proxy.config_example
    COMMAND sh -c "set -e; p=\"$1\"; src=\"$2\"
      \"$p\" --config \"$src/proxy/kms-proxy.conf.example\" --region=us-east-1 --check
      for k in $(sed -n 's/^#* *\\([a-z_][a-z_]*\\) = .*/\\1/p' \"$src/proxy/kms-proxy.conf.example\"); do
        \"$p\" --help | grep -q -- \"--$k=\" || { echo \"option $k not in --help\"; exit 1; }
      done
      if \"$p\" --bogus=1 2>/dev/null; then echo 'unknown option accepted'; exit 1; fi
      if \"$p\" --region=us-east-1 --deadline_ms=banana --check 2>/dev/null; then echo 'bad value accepted'; exit 1; fi
      echo ok" sh $<TARGET_FILE:nitrodiag-kms-proxy> ${PROJECT_SOURCE_DIR})
  set_tests_properties(proxy.config_example PROPERTIES TIMEOUT 30)
endif()
