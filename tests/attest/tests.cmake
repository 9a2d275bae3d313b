# nitrodiag attest against an independent verifier: Debian's python3-cryptography and python3-cbor2 generate P-384
# chains and ES384 documents for every way verification can fail and verify them on their own (tests/attest/
# attest_check.py); the real NSM documents in tests/fixtures/attest verify against the AWS root (aws-root-g1.pem, from
# AWS_NitroEnclaves_Root-G1.zip whose SHA-256 AWS publishes).
find_program(ND_DEBIAN_PYTHON3_ATTEST python3 PATHS /usr/bin NO_DEFAULT_PATH)
add_test(NAME attest.independent
         COMMAND ${ND_DEBIAN_PYTHON3_ATTEST} ${CMAKE_CURRENT_LIST_DIR}/attest_check.py $<TARGET_FILE:nitrodiag>
                 ${PROJECT_SOURCE_DIR}/tests/fixtures/attest ${CMAKE_CURRENT_BINARY_DIR}/attest-tmp)
set_tests_properties(attest.independent PROPERTIES TIMEOUT 300 ENVIRONMENT "NITRODIAG_PATH=")
# Signed EIFs built byte by byte in Python as aws-nitro-enclaves-image-format's EifBuilder writes them: describe-eif's
# SigningCertificate / SignatureCheck / PCR8 and the E59 findings (expired, not yet valid, expiring within 30 days).
add_test(NAME attest.eif_signed
         COMMAND ${ND_DEBIAN_PYTHON3_ATTEST} ${CMAKE_CURRENT_LIST_DIR}/eif_sign_check.py $<TARGET_FILE:nitrodiag>
                 ${CMAKE_CURRENT_BINARY_DIR}/eif-sign-tmp)
set_tests_properties(attest.eif_signed PROPERTIES TIMEOUT 300 ENVIRONMENT "NITRODIAG_PATH=")
