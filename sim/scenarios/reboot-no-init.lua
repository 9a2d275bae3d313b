-- The operator's image was built from a Dockerfile with CMD ["/bin/sh","-c","/vsock-pingpong --mode vsock"] on top
-- of ENTRYPOINT ["/init"], FROM scratch (no shell). CMD replaces ENTRYPOINT, /bin/sh does not exist, so init's
-- command fails at once and the enclave reboots: run-enclave succeeds (the heartbeat comes before the app), the
-- console shows "reboot: Restarting system" with no [init] line, and the enclave leaves describe-enclaves.
return {
  extends = "healthy",
  description = "Enclave reboots at once: CMD [\"/bin/sh\",\"-c\",...] replaces ENTRYPOINT [\"/init\"] in an image without a shell",
  images = {
    ["app:latest"] = { Entrypoint = { "/init" }, Cmd = { "/bin/sh", "-c", "/vsock-pingpong --mode vsock" },
      Env = { "VSOCK_PINGPONG_MODE=vsock" }, Shell = false },
    -- the vsock test image was built the same way (hello-vsock.eif comes from it)
    ["hello-enclave:vsock"] = { Entrypoint = { "/init" }, Cmd = { "/bin/sh", "-c", "/vsock-pingpong --mode vsock" },
      Env = { "VSOCK_PINGPONG_MODE=vsock" }, Shell = false },
  },
  files = {
    ["/home/ec2-user/app/Dockerfile"] = 'FROM scratch\nCOPY init /init\nCOPY vsock-pingpong /vsock-pingpong\n'
      .. 'ENV VSOCK_PINGPONG_MODE=vsock\nENTRYPOINT ["/init"]\nCMD ["/bin/sh","-c","/vsock-pingpong --mode vsock"]\n',
  },
  workload = { { eif = "/home/ec2-user/app.eif", image = "app:latest", context = "/home/ec2-user/app", memory = 1024,
    cpu_count = 2, debug = true } },
}
