-- Two run-enclave at once (a deployment script and a systemd unit restarting): the first holds the boot heartbeat
-- listener (CID 3, port 9000) while its enclave boots, so the second fails with E36 "Enclave boot heartbeat vsock
-- connection - vsock bind error" (resource_manager.rs), then E39.
return {
  extends = "healthy",
  description = "E36: a concurrent run-enclave holds the heartbeat port (vsock bind error)",
  host = { heartbeat_busy = true },
  workload = { { eif = "/home/ec2-user/hello-vsock.eif", memory = 1024, cpu_count = 2, debug = true } },
}
