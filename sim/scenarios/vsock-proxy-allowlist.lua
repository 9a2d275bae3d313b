-- The KMS proxy cannot serve the enclave: the vsock-proxy allowlist has no entry for the region's KMS endpoint (it
-- rejects with "The given address and port are not allowed"), and the proxy unit failed after a DNS lookup error.
-- `nitrodiag --sim vsock-proxy-allowlist doctor` shows it; diag10 collects the unit's state into its bundle.
return {
  extends = "healthy",
  description = "vsock-proxy: allowlist without kms.eu-west-2 and the proxy unit failed (DNS); KMS calls from the enclave fail",
  env = { AWS_REGION = "eu-west-2" },
  services = { ["nitro-enclaves-vsock-proxy.service"] = { description = "Nitro Enclaves vsock Proxy", state = "failed",
    exec = "/usr/bin/vsock-proxy" } },
  files = {
    ["/etc/nitro_enclaves/vsock-proxy.yaml"] = "allowlist:\n- {address: kms.us-east-1.amazonaws.com, port: 443}\n",
  },
}
