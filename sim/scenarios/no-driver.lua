-- The nitro_enclaves driver is not loaded (or the instance was launched without enclave support): there is no
-- /dev/nitro_enclaves, the allocator service fails, and run-enclave fails with E19 on '/dev/nitro_enclaves' (Open).
return {
  description = "E19: no /dev/nitro_enclaves (driver not loaded / enclave support off); the allocator service failed",
  host = { instance_id = "i-0123456789abcdef0", cpus = 4, threads_per_core = 2, driver = false },
  allocator_yaml = "---\nmemory_mib: 4096\ncpu_count: 2\n",
  images = {
    ["hello-enclave:vsock"] = { Entrypoint = { "/init" }, Env = { "VSOCK_PINGPONG_MODE=vsock" }, Shell = false },
  },
  eifs = { { path = "/home/ec2-user/hello-vsock.eif", image = "hello-enclave:vsock" } },
}
