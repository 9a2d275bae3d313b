-- A stale enclave from an earlier run still holds both CPUs of the pool (and 1 GiB), so a new run-enclave gets
-- through memory allocation and then fails to add vCPUs: E29 (NE_ERR_NO_CPUS_AVAIL_IN_POOL), E39, and the kernel log
-- says "No CPUs available in CPU pool". Fix: terminate the stale enclave.
return {
  description = "Stale enclave holds the whole CPU pool: run-enclave fails with E29/E39 until it is terminated",
  host = { instance_id = "i-0123456789abcdef0", cpus = 4, threads_per_core = 2 },
  allocator_yaml = "---\n# Enclave configuration file.\nmemory_mib: 4096\ncpu_count: 2\n",
  images = {
    ["hello:latest"] = { Cmd = { "/bin/hello.sh" }, Shell = true, App = "hello" },
    ["hello-enclave:vsock"] = { Entrypoint = { "/init" }, Env = { "VSOCK_PINGPONG_MODE=vsock" }, Shell = false },
    ["hello-enclave:basic"] = { Entrypoint = { "/init" }, Env = { "VSOCK_PINGPONG_MODE=basic" }, Shell = false },
  },
  eifs = {
    { path = "/usr/share/nitro_enclaves/examples/hello.eif", image = "hello:latest" },
    { path = "/home/ec2-user/hello-vsock.eif", image = "hello-enclave:vsock" },
    { path = "/home/ec2-user/hello-basic.eif", image = "hello-enclave:basic" },
  },
  -- already running when the host comes up (age: seconds since it started)
  enclaves = {
    { eif = "/home/ec2-user/hello-basic.eif", name = "hello-basic", cpu_count = 2, memory = 1024, cid = 16,
      debug = true, age = 86400 },
  },
}
