# tests/vm: the enclave programs in a real Linux kernel (qemu TCG, Debian's cloud kernel fetched — not installed —
# by fetch-kernel.sh): nitrodiag-init as PID 1 and as the wrapper of failing apps, vsock-pingpong over AF_VSOCK
# loopback (CID 1), the log channel to nitrodiag-logd (built statically here as vm-logd), and triage of each case.
# See run-vm-test.sh. The guest binaries must be static, so the test is not registered in sanitizer builds
# (ND_SANITIZE), where the enclave programs are linked dynamically.
if(NOT ND_SANITIZE AND TARGET vsock-pingpong)
  set(ND_VM_DIR ${CMAKE_CURRENT_LIST_DIR})
  add_executable(vmtest ${ND_VM_DIR}/vmtest.c ${PROJECT_SOURCE_DIR}/core/vsock.c ${PROJECT_SOURCE_DIR}/core/nd.c
                        ${PROJECT_SOURCE_DIR}/enclave/errname.c)
  target_include_directories(vmtest PRIVATE ${PROJECT_SOURCE_DIR}/core)
  target_link_options(vmtest PRIVATE -static)
  add_executable(vmapp ${ND_VM_DIR}/vmapp.c)
  target_link_options(vmapp PRIVATE -static)
  # nitrodiag-logd, static, for the guest (the installed one links ndcore dynamically).
  find_library(ND_VM_JANSSON_STATIC libjansson.a REQUIRED)
  find_library(ND_VM_CRYPTO_STATIC libcrypto.a REQUIRED)
  add_executable(vm-logd ${PROJECT_SOURCE_DIR}/logd/logd.c ${PROJECT_SOURCE_DIR}/core/frame.c
                         ${PROJECT_SOURCE_DIR}/core/jsonw.c ${PROJECT_SOURCE_DIR}/core/jsonlift.c ${PROJECT_SOURCE_DIR}/core/codec.c ${PROJECT_SOURCE_DIR}/core/buf.c ${PROJECT_SOURCE_DIR}/core/logchan.c
                         ${PROJECT_SOURCE_DIR}/core/vsock.c ${PROJECT_SOURCE_DIR}/core/nd.c
                         ${PROJECT_SOURCE_DIR}/enclave/errname.c)
  target_include_directories(vm-logd PRIVATE ${PROJECT_SOURCE_DIR}/core)
  target_link_libraries(vm-logd PRIVATE ${ND_VM_JANSSON_STATIC} ${ND_VM_CRYPTO_STATIC} ${CMAKE_DL_LIBS})
  target_link_options(vm-logd PRIVATE -static)
  add_executable(mkinitramfs ${ND_VM_DIR}/mkinitramfs.c)
  target_link_libraries(mkinitramfs PRIVATE PkgConfig::ARCHIVE)
  add_test(NAME vm.enclave
           COMMAND ${ND_VM_DIR}/run-vm-test.sh $<TARGET_FILE:nitrodiag-init> $<TARGET_FILE:vsock-pingpong>
                   $<TARGET_FILE:vmtest> $<TARGET_FILE:mkinitramfs> $<TARGET_FILE:vm-logd> $<TARGET_FILE:vmapp>
                   $<TARGET_FILE:nitrodiag>)
  set_tests_properties(vm.enclave PROPERTIES TIMEOUT 400 SKIP_RETURN_CODE 77
                       ENVIRONMENT "ND_SOURCE_DIR=${PROJECT_SOURCE_DIR};NITRODIAG_PATH=")
endif()
