# tests/realboot: EIFs booted for real under QEMU's nitro-enclave machine (TCG) with nd-vhost-vsock: the spec
# (heartbeat, console, vsock ping, PCRs from /dev/nsm, a broken image reboots, no leftovers) and diag10 on a
# simulated host whose backend is qemu. Skipped (77) without QEMU/kernel/nd-vhost-vsock, failed under CI=true.
if(NOT ND_SANITIZE AND TARGET vsock-pingpong AND TARGET nitrodiag-bootstrap)
  set(ND_RB_VHOST "")
  if(TARGET nd-vhost-vsock)
    set(ND_RB_VHOST $<TARGET_FILE:nd-vhost-vsock>)
  endif()
  add_test(NAME realboot.tools COMMAND ${CMAKE_CURRENT_LIST_DIR}/run.sh tools $<TARGET_FILE:nitrodiag>)
  foreach(mode spec sim)
    add_test(NAME realboot.qemu.${mode}
             COMMAND ${CMAKE_CURRENT_LIST_DIR}/run.sh ${mode} $<TARGET_FILE:nitrodiag> "${ND_RB_VHOST}")
    set_tests_properties(realboot.qemu.${mode} PROPERTIES TIMEOUT 900 SKIP_RETURN_CODE 77 RUN_SERIAL TRUE
                         ENVIRONMENT "ND_SOURCE_DIR=${PROJECT_SOURCE_DIR};NITRODIAG_PATH=")
  endforeach()
endif()
