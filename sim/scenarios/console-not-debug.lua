-- An enclave started without --debug-mode is running; `nitro-cli console` (and run-enclave --attach-console without
-- --debug-mode) fails with E44: the console is only offered to debug-mode enclaves.
return {
  description = "E44: the running enclave was started without --debug-mode, so its console cannot be attached",
  host = { instance_id = "i-0123456789abcdef0", cpus = 4, threads_per_core = 2 },
  allocator_yaml = "---\nmemory_mib: 4096\ncpu_count: 2\n",
  images = {
    ["hello:latest"] = { Cmd = { "/bin/hello.sh" }, Shell = true, App = "hello" },
    ["hello-enclave:vsock"] = { Entrypoint = { "/init" }, Env = { "VSOCK_PINGPONG_MODE=vsock" }, Shell = false },
  },
  eifs = {
    { path = "/usr/share/nitro_enclaves/examples/hello.eif", image = "hello:latest" },
    { path = "/home/ec2-user/hello-vsock.eif", image = "hello-enclave:vsock" },
  },
  enclaves = { { eif = "/home/ec2-user/hello-vsock.eif", name = "hello-vsock", cpu_count = 2, memory = 1024, cid = 16,
    debug = false, age = 120 } },
}
