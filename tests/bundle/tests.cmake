# tests/bundle: the bundle from the command line (nitrodiag bundle FILE) against archives checked and tampered with
# by tar(1), sha256 via python3's hashlib — independent of nitrodiag's own reader.
add_test(NAME bundle.cli COMMAND ${CMAKE_CURRENT_LIST_DIR}/cli.sh $<TARGET_FILE:nitrodiag> ${PROJECT_SOURCE_DIR})
set_tests_properties(bundle.cli PROPERTIES TIMEOUT 120)
