-- reboot-no-init (CMD ["/bin/sh","-c",…] over ENTRYPOINT ["/init"] in an image without a shell), booted for real
-- under QEMU: the bootstrap's execvpe fails and the enclave reboots for real (tests/realboot/run.sh sim).
return {
  extends = "reboot-no-init",
  description = "Enclave reboots at once for real (QEMU): CMD [\"/bin/sh\",\"-c\",...] in an image without a shell",
  backend = "qemu",
}
