-- build-enclave run from AWS SSM (no HOME) or a bare systemd unit: nitro-cli cannot find a folder for its build
-- artifacts and fails with E51 unless HOME or NITRO_CLI_ARTIFACTS is set.
return {
  extends = "healthy",
  description = "E51: build-enclave with neither HOME nor NITRO_CLI_ARTIFACTS set (as under AWS SSM RunShellScript)",
  env = { HOME = false, NITRO_CLI_ARTIFACTS = false },   -- false: unset in the environment of the simulated host
}
