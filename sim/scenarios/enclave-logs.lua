-- A healthy parent where nitrodiag-logd runs: an enclave whose image uses nitrodiag-init --log has streamed its
-- lines to /var/log/nitrodiag/enclaves/<enclave-id>.log (this one died of lo being down). diag10 must collect the
-- file into the bundle (enclave_logs/).
return {
  description = "Healthy host with nitrodiag-logd's enclave log files (the log channel of a production enclave)",
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
  files = {
    ["/var/log/nitrodiag/enclaves/i-0123456789abcdef0-enc0123456789abcd.log"] =
      "2026-12-06T11:42:13.031Z enclave=i-0123456789abcdef0-enc0123456789abcd cid=16 logd: connected\n" ..
      "2026-12-06T11:42:13.031Z enclave=i-0123456789abcdef0-enc0123456789abcd cid=16 seq=7 init: [init] check loopback warn: lo is down\n" ..
      "2026-12-06T11:42:13.083Z enclave=i-0123456789abcdef0-enc0123456789abcd cid=16 seq=16 stderr: vmapp: health check: dial tcp 127.0.0.1:8080: connect: Network is unreachable\n",
  },
}
