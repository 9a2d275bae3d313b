-- The vsock test image was built with CMD ["/bin/sh","-c","/vsock-pingpong --mode vsock"] on top of
-- ENTRYPOINT ["/init"] in an image without a shell. CMD replaces ENTRYPOINT, /bin/sh does not exist, so init's
-- command fails at once and the enclave reboots: run-enclave succeeds (the heartbeat comes before the app), the
-- console shows "reboot: Restarting system" with no [init] line, and the enclave leaves describe-enclaves.
return {
  description = "Enclave reboots at once: CMD [\"/bin/sh\",\"-c\",...] replaces ENTRYPOINT [\"/init\"] in an image without a shell",
  host = { instance_id = "i-0123456789abcdef0", cpus = 4, threads_per_core = 2 },
  allocator_yaml = "---\nmemory_mib: 4096\ncpu_count: 2\n",
  images = {
    ["hello:latest"] = { Cmd = { "/bin/hello.sh" }, Shell = true, App = "hello" },
    ["hello-enclave:vsock"] = { Entrypoint = { "/init" }, Cmd = { "/bin/sh", "-c", "/vsock-pingpong --mode vsock" },
      Env = { "VSOCK_PINGPONG_MODE=vsock" }, Shell = false },
  },
  eifs = {
    { path = "/usr/share/nitro_enclaves/examples/hello.eif", image = "hello:latest" },
    { path = "/home/ec2-user/hello-vsock.eif", image = "hello-enclave:vsock" },
  },
}
