# tests/sim: the simulated Nitro host (sim/, docs/simulator.md). Each *_spec.lua runs inside the real binary as
# `nitrodiag spec FILE` (ctest name sim.<name>); the stand-ins run as separate processes through the links the
# simulator puts on PATH, exactly as runbooks call them.
file(GLOB ND_SIM_SPECS CONFIGURE_DEPENDS ${CMAKE_CURRENT_LIST_DIR}/*_spec.lua)
foreach(spec ${ND_SIM_SPECS})
  get_filename_component(name ${spec} NAME_WE)
  string(REGEX REPLACE "_spec$" "" short ${name})
  # each spec file gets its own TMPDIR: "no simulated host left behind" is checked there, unaffected by the others
  set(tmp ${CMAKE_CURRENT_BINARY_DIR}/sim-tmp-${short})
  file(MAKE_DIRECTORY ${tmp})
  add_test(NAME sim.${short} COMMAND nitrodiag spec ${spec})
  set_tests_properties(sim.${short} PROPERTIES TIMEOUT 300
    ENVIRONMENT "ND_SOURCE_DIR=${PROJECT_SOURCE_DIR};ND_BINARY_DIR=${PROJECT_BINARY_DIR};NITRODIAG_PATH=;TMPDIR=${tmp}")
endforeach()
# sim.sweep plants a killed run's vsock directory in /tmp (where every simulated host sweeps, whatever TMPDIR is) and
# checks that its own run removes it and says so: any other --sim run at the same time could sweep it first, so it
# runs alone. (That case was in diag10_spec; it is the only one there that needs it, so sim.diag10 runs in parallel.)
set_tests_properties(sim.sweep PROPERTIES RUN_SERIAL TRUE)
