-- A stale enclave from an earlier run still holds both CPUs of the pool (and 1 GiB), so the driver refuses a new
-- enclave at NE_CREATE_VM: E29 ("The enclave cannot be created because no CPUs are available in the pool", before
-- "Start allocating memory..."), E39, and the kernel log says "No CPUs available in CPU pool". Fix: terminate it.
return {
  extends = "healthy",
  description = "Stale enclave holds the whole CPU pool: run-enclave fails with E29/E39 until it is terminated",
  -- already running when the host comes up (age: seconds since it started)
  enclaves = {
    { eif = "/home/ec2-user/hello-basic.eif", name = "hello-basic", cpu_count = 2, memory = 1024, cid = 16,
      debug = true, age = 86400 },
  },
  workload = { { eif = "/home/ec2-user/hello-vsock.eif", memory = 1024, cpu_count = 2, debug = true } },
}
