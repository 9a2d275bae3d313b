-- nd.rules.kms — causes in KMS answers and in the errors of kmstool_enclave_cli / the AWS C SDK (aws-c-io,
-- aws-c-http, aws-nitro-enclaves-sdk-c) and other enclave KMS clients. The KMS proxy's own JSON log lines
-- (kms_proxy_response) are nd.diagnose.kms_logs' business: these rules do not read them.
local function line(f, pat)
  for _, l in ipairs(f:all(pat)) do
    -- the proxy's own JSON lines are kms_logs' business; nitrodiag-init's check lines name paths, not errors
    if not l:find("kms_proxy_", 1, true) and not l:find("[init] check ", 1, true) then return l end
  end
end

return { area = "kms", rules = {
  { id = "kms-debug-zero-pcrs", finding = "KMS_DEBUG_MODE_PCRS_ZERO", confidence = 0.9,
    match = function(f)
      local zero = line(f, string.rep("0", 96))
      if zero and (f:has("AccessDenied") or f:has("debug")) then return { evidence = { zero, line(f, "AccessDenied") } } end
    end },
  { id = "kms-deny-attestation", finding = "KMS_ACCESS_DENIED_ATTESTATION", confidence = 0.85,
    match = function(f)
      local l = line(f, "AccessDenied")
      if l and (f:has("RecipientAttestation") or f:has("attestation") or f:has("Attestation") or f:has("explicit deny")) then
        return { evidence = { l, line(f, "RecipientAttestation") } }
      end
    end },
  { id = "kms-deny", finding = "KMS_ACCESS_DENIED", confidence = 0.7,
    match = function(f)
      local l = line(f, "AccessDenied") or line(f, "not authorized to perform: kms:")
      if l then return { vars = { detail = l:sub(1, 200) }, evidence = { l } } end
    end },
  { id = "kms-invalid-ciphertext", finding = "KMS_INVALID_CIPHERTEXT", confidence = 0.9,
    match = function(f)
      local l = line(f, "InvalidCiphertext")
      if l then return { evidence = { l } } end
    end },
  { id = "kms-throttled", finding = "KMS_THROTTLED", confidence = 0.8,
    match = function(f)
      local l = line(f, "ThrottlingException") or line(f, "Rate exceeded")
      if l then return { vars = { detail = "KMS throttled the request: " .. l:sub(1, 160) }, evidence = { l } } end
    end },
  { id = "kms-tls-untrusted", finding = "ENCLAVE_TLS_WRONG_PROXY_HOST", confidence = 0.86,
    -- s2n (aws-c-io's TLS) says "Certificate is untrusted" (S2N_ERR_CERT_UNTRUSTED) when the server's certificate
    -- does not name the host asked for (s2n_verify_host_information, checked before the chain) or its chain does not
    -- verify. With a trust store that loaded (no "Error initializing trust store"), kmstool asked for
    -- kms.<region>.amazonaws.com and got another name: the vsock-proxy on that port forwards to another host or
    -- region (aws-nitro-enclaves-sdk-c docs/kmstool.md, Troubleshooting: region mismatch).
    match = function(f)
      local l = line(f, "Certificate is untrusted")
      if l and not f:has("Error initializing trust store") and not f:has("Failed to set ca_path") then
        local region = f.text:match("%-%-region[%s\"]+([%a%d%-]+)")
        return { vars = { detail = "s2n: Certificate is untrusted" .. (region and (", kmstool --region " .. region) or "") },
                 evidence = { l, line(f, "AWS_IO_TLS_ERROR_NEGOTIATION_FAILURE") } }
      end
    end },
  { id = "kms-tls-trust", finding = "KMS_TLS_TRUST_STORE", confidence = 0.85,
    match = function(f)
      local l = line(f, "AWS_IO_TLS_ERROR_NEGOTIATION_FAILURE") or line(f, "AWS_IO_FILE_VALIDATION_FAILURE")
        or line(f, "ca%-bundle") or line(f, "certificate verify failed") or line(f, "unable to get local issuer certificate")
        or line(f, "AWS_IO_TLS_CTX_ERROR") or line(f, "TLS handshake") or line(f, "Error initializing trust store")
        or line(f, "Failed to set ca_path")
      if l then return { evidence = { l } } end
    end },
  { id = "kmstool-on-parent", finding = "KMSTOOL_NOT_IN_ENCLAVE", confidence = 0.85,
    match = function(f)
      local l = line(f, "seed_entropy") or line(f, "/dev/nsm") or (line(f, "NSM") and line(f, "[Nn]o such file"))
        or line(f, "aws_nitro_enclaves_library_init")
      if l and (f:has("kmstool") or f:has("nsm") or f:has("nitro_enclaves")) then return { evidence = { l, line(f, "Fatal error condition") } } end
    end },
  { id = "kms-credentials", finding = "KMS_CREDENTIALS", confidence = 0.8,
    match = function(f)
      local l = line(f, "ExpiredToken") or line(f, "UnrecognizedClientException") or line(f, "InvalidSignatureException")
        or line(f, "security token included in the request is invalid")
      if l then return { vars = { detail = l:sub(1, 160) }, evidence = { l } } end
    end },
  { id = "kms-sdk-vsock-address", finding = "KMS_SDK_VSOCK_ADDRESS_BUG", confidence = 0.9,
    match = function(f)
      local l = line(f, "VSOCK port > UINT16_MAX") or (line(f, "AWS_IO_SOCKET_INVALID_ADDRESS") and f:has("proxy-port") and line(f, "AWS_IO_SOCKET_INVALID_ADDRESS"))
      if l then return { evidence = { l, line(f, "AWS_IO_SOCKET_INVALID_ADDRESS") } } end
    end },
  { id = "acm-kms-decrypt", finding = "KMS_ACCESS_DENIED", confidence = 0.6,
    match = function(f)
      local l = line(f, "KmsDecryptFailed")
      if l then return { vars = { detail = "the enclave's KMS Decrypt failed (" .. (line(f, "Attestation failed") or "KmsDecryptFailed") .. ")" },
                         evidence = { l, line(f, "Attestation failed") } } end
    end },
  { id = "kms-no-route", finding = "KMS_NO_ROUTE", confidence = 0.6,
    match = function(f)
      local l = line(f, "AWS_IO_SOCKET_CONNECTION_REFUSED") or line(f, "AWS_IO_SOCKET_TIMEOUT") or line(f, "AWS_IO_DNS_INVALID_NAME")
        or line(f, "AWS_IO_SOCKET_NO_ROUTE_TO_HOST") or line(f, "AWS_IO_SOCKET_CLOSED")
      if l then return { vars = { detail = l:match("(AWS_IO_[%u_]+)") }, evidence = { l } } end
    end },
} }
