/*
 * pingpong_kms.h — the kms mode of vsock-pingpong (the enclave side of the KMS flow through the host proxy).
 *
 * Written by the proxy engineer in enclave/pingpong_kms.c: RSA-2048 key, attestation document carrying the SPKI
 * public key (/dev/nsm when present, else a development stand-in clearly marked as not attested), GenerateDataKey
 * then Decrypt with the recipient over the frame protocol (core/nd_frame.h), CMS decryption of
 * CiphertextForRecipient, and `[enclave] SUCCESS: received wrapped key from KMS` or the error code.
 *
 * vsock-pingpong (enclave/pingpong.c) calls it for `--mode kms` with its own argv (the program name first, then
 * every argument, including `--mode kms` and any `--connect ADDR` override), after printing `[enclave] mode=kms`.
 * stdout/stderr already go to the console. It returns the process exit status: 0 on success, non-zero on failure.
 * enclave/CMakeLists.txt compiles pingpong_kms.c (linked statically with OpenSSL) only when the file exists;
 * otherwise kms mode prints one error line and exits 2.
 */
#ifndef ND_PINGPONG_KMS_H
#define ND_PINGPONG_KMS_H

int pingpong_kms_main(int argc, char **argv);

#endif
