# tests/bundle: the bundle from the command line (nitrodiag bundle FILE) against archives checked and tampered with
# by tar(1), sha256 via python3's hashlib — independent of nitrodiag's own reader.
add_test(NAME bundle.cli COMMAND ${CMAKE_CURRENT_LIST_DIR}/cli.sh $<TARGET_FILE:nitrodiag> ${PROJECT_SOURCE_DIR})
set_tests_properties(bundle.cli PROPERTIES TIMEOUT 120)

# tests/bundle/faults.sh: collection under fault injection (issue 19), each case its own test.
foreach(case odd_names enospc sigkill interrupted signature no_libarchive)
  add_test(NAME bundle.faults.${case}
           COMMAND ${CMAKE_CURRENT_LIST_DIR}/faults.sh ${case} $<TARGET_FILE:nitrodiag> ${PROJECT_SOURCE_DIR})
  set_tests_properties(bundle.faults.${case} PROPERTIES TIMEOUT 180 SKIP_RETURN_CODE 77)
endforeach()
# bundle.planted: secrets of every shape in tests/data/scrub-shapes.txt, planted in a fake host tree and collected
# through every artifact kind; Python's gzip/tarfile search the archive for any 8 bytes of any of them (issue 13).
add_test(NAME bundle.planted COMMAND python3 ${CMAKE_CURRENT_LIST_DIR}/planted.py $<TARGET_FILE:nitrodiag> ${PROJECT_SOURCE_DIR})
set_tests_properties(bundle.planted PROPERTIES TIMEOUT 300 ENVIRONMENT "ND_TEST_TMP=${PROJECT_BINARY_DIR}/tests/tmp")
