-- A signed EIF whose signing certificate has expired: nitro-cli >= 1.2.2 checks it before starting the enclave and
-- fails with E59 (EIF signature checker error); older versions let it boot and failed with E36 VsockTimeoutError
-- (aws-nitro-enclaves-cli#243).
return {
  extends = "healthy",
  description = "E59: the workload's EIF is signed with an expired certificate",
  images = { ["signed-app:latest"] = { Entrypoint = { "/init" }, Env = { "VSOCK_PINGPONG_MODE=vsock" }, Shell = false } },
  eifs = { { path = "/home/ec2-user/signed-app.eif", image = "signed-app:latest", signature = "expired" } },
  workload = { { eif = "/home/ec2-user/signed-app.eif", memory = 1024, cpu_count = 2, debug = true } },
}
