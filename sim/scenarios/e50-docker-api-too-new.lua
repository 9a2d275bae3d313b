-- The Docker daemon speaks an API newer than nitro-cli's Docker client understands (shiplift; reported in
-- aws/aws-nitro-enclaves-cli#537): build-enclave cannot pull the image it just built and fails with E50
-- ("Docker error: PullError" before the block).
return {
  extends = "healthy",
  description = "E50: Docker API too new for nitro-cli's Docker client: build-enclave fails to pull an existing image",
  host = { docker_api_too_new = true },
}
