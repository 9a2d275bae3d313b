# tests/vm: the enclave programs in a real Linux kernel (qemu TCG, Debian's cloud kernel fetched — not installed —
# by fetch-kernel.sh): enclave/init as PID 1, vsock-pingpong over AF_VSOCK loopback (CID 1). See run-vm-test.sh.
# The guest binaries must be static, so the test is not registered in sanitizer builds (ND_SANITIZE), where the
# enclave programs are linked dynamically.
if(NOT ND_SANITIZE AND TARGET vsock-pingpong)
  set(ND_VM_DIR ${CMAKE_CURRENT_LIST_DIR})
  add_executable(vmtest ${ND_VM_DIR}/vmtest.c ${PROJECT_SOURCE_DIR}/core/vsock.c ${PROJECT_SOURCE_DIR}/core/nd.c
                        ${PROJECT_SOURCE_DIR}/enclave/errname.c)
  target_include_directories(vmtest PRIVATE ${PROJECT_SOURCE_DIR}/core)
  target_link_options(vmtest PRIVATE -static)
  add_executable(mkinitramfs ${ND_VM_DIR}/mkinitramfs.c)
  target_link_libraries(mkinitramfs PRIVATE PkgConfig::ARCHIVE)
  add_test(NAME vm.enclave
           COMMAND ${ND_VM_DIR}/run-vm-test.sh $<TARGET_FILE:enclave-init> $<TARGET_FILE:vsock-pingpong>
                   $<TARGET_FILE:vmtest> $<TARGET_FILE:mkinitramfs>)
  set_tests_properties(vm.enclave PROPERTIES TIMEOUT 240 SKIP_RETURN_CODE 77)
endif()
