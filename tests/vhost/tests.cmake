# tests/vhost: nd-vhost-vsock (vhost/).
#  unit.vhost        the vhost-user message handling, virtqueues and the vsock packet/credit state machine, with
#                    malformed input (test_vhost.c, no VM)
#  vhost.cli         the program: options, refusing to replace a file, SIGTERM removes its sockets (cli-test.sh)
#  vhost.qemu        Debian's QEMU boots Debian's cloud kernel with a vhost-user-vsock-pci device served by
#                    nd-vhost-vsock: heartbeat, 1 MiB each way in both directions, RST, CONNECT (run-qemu-test.sh pci)
#  vhost.qemu-nitro  the same guest in an EIF on QEMU's nitro-enclave machine (run-qemu-test.sh nitro); skipped
#                    without a QEMU that has the machine (tools/build-qemu.sh) or the enclave kernel
set(ND_VHOST_TEST_DIR ${CMAKE_CURRENT_LIST_DIR})
add_executable(test_vhost ${ND_VHOST_TEST_DIR}/test_vhost.c)
target_include_directories(test_vhost PRIVATE ${PROJECT_SOURCE_DIR}/tests/unit)
target_link_libraries(test_vhost PRIVATE ndvhost)
add_test(NAME unit.vhost COMMAND test_vhost)
set_tests_properties(unit.vhost PROPERTIES TIMEOUT 120)
add_test(NAME vhost.cli COMMAND ${ND_VHOST_TEST_DIR}/cli-test.sh $<TARGET_FILE:nd-vhost-vsock>)
set_tests_properties(vhost.cli PROPERTIES TIMEOUT 60)
# The guest program must be static (as tests/vm): not in sanitizer builds. The guests are x86_64 and the initramfs
# comes from tests/vm's mkinitramfs, which only x86_64 builds have (tests/CMakeLists.txt): not in the aarch64 build.
if(NOT ND_SANITIZE AND TARGET vsock-pingpong AND CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64)$")
  add_executable(vhostguest ${ND_VHOST_TEST_DIR}/vhostguest.c)
  target_link_options(vhostguest PRIVATE -static)
  foreach(mode pci nitro)
    set(name vhost.qemu)
    if(mode STREQUAL "nitro")
      set(name vhost.qemu-nitro)
    endif()
    add_test(NAME ${name}
             COMMAND ${ND_VHOST_TEST_DIR}/run-qemu-test.sh ${mode} $<TARGET_FILE:nd-vhost-vsock>
                     $<TARGET_FILE:vhostguest> $<TARGET_FILE:vsock-pingpong> $<TARGET_FILE:mkinitramfs>
                     $<TARGET_FILE:nitrodiag>)
    set_tests_properties(${name} PROPERTIES TIMEOUT 400 SKIP_RETURN_CODE 77 RESOURCE_LOCK nd_qemu
                         ENVIRONMENT "NITRODIAG_PATH=")
  endforeach()
endif()
