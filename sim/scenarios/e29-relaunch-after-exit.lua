-- Relaunching right after an enclave exited or was terminated: for a few seconds the driver has not yet given its
-- CPUs back to the pool, so NE_CREATE_VM fails with E29 ("no CPUs are available in the pool"); the same command a
-- little later succeeds. A restart loop without a pause hits it every time.
return {
  extends = "healthy",
  description = "Transient E29: run-enclave right after an enclave exited, before its CPUs are back in the pool",
  host = { cpu_release_delay = 10 },
  workload = { { eif = "/home/ec2-user/hello-vsock.eif", memory = 1024, cpu_count = 2, debug = true } },
}
