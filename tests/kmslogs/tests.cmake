# tests/kmslogs: `nitrodiag kms-logs mode=summary` on a generated log of 140 000 events (plain, tracing-wrapped,
# journalctl short-iso prefixed, noise, malformed lines, late and missing responses, a proxy restart) against the
# same summary computed independently by python3's json module; the gzip'd copy; since= by binary search; peak RSS
# that does not grow with the log.
add_test(NAME kmslogs.summary_vs_python
  COMMAND python3 ${CMAKE_CURRENT_LIST_DIR}/summary_check.py ${PROJECT_BINARY_DIR}/nitrodiag ${PROJECT_BINARY_DIR}/tests/tmp)
set_tests_properties(kmslogs.summary_vs_python PROPERTIES TIMEOUT 300)
