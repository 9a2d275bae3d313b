# nitrodiag on a real terminal (a pseudo-terminal at 80 and 200 columns; Debian's python3, pty module only).
add_test(NAME tty.pty COMMAND /usr/bin/python3 ${CMAKE_CURRENT_LIST_DIR}/tty_pty.py $<TARGET_FILE:nitrodiag> ${PROJECT_SOURCE_DIR})
set_tests_properties(tty.pty PROPERTIES TIMEOUT 300)
