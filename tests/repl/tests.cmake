# The REPL, driven through a real pseudo-terminal (Debian's python3, pty module only).
add_test(NAME repl.pty COMMAND /usr/bin/python3 ${CMAKE_CURRENT_LIST_DIR}/repl_pty.py $<TARGET_FILE:nitrodiag>)
set_tests_properties(repl.pty PROPERTIES TIMEOUT 600)
