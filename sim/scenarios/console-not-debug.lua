-- An enclave started without --debug-mode is running; `nitro-cli console` fails with E44: the console is only
-- offered to debug-mode enclaves (run-enclave --attach-console implies --debug-mode, so it does not hit this).
return {
  extends = "healthy",
  description = "E44: the running enclave was started without --debug-mode, so its console cannot be attached",
  enclaves = { { eif = "/home/ec2-user/hello-vsock.eif", name = "hello-vsock", cpu_count = 2, memory = 1024, cid = 16,
    debug = false, age = 120 } },
}
