-- nd.attest_findings — the findings of `nitrodiag attest`, `nitrodiag kms-policy` and the signed-EIF checks, in the
-- shape of the knowledge registry nd.findings (define{code, severity, title, message, remediation, refs} and
-- make(code, vars, evidence)). When nd.findings is present these entries are defined there (one registry); until
-- then a minimal registry of the same shape below holds them, so moving over is deleting the fallback.
--
--   local F = require "nd.attest_findings"
--   s:finding(F.make("KMS_POLICY_EXPLICIT_DENY", { action = "kms:Decrypt", sid = "DenyOthers" }, { quoted }))
local ok, registry = pcall(require, "nd.findings")

local F
if ok and type(registry) == "table" and registry.define and registry.make then
  F = registry
else
  F = {}
  local REG = {}
  function F.define(t)
    assert(type(t.code) == "string" and t.code:match("^[%u%d_]+$"), "define: code must be UPPER_SNAKE")
    t.message = t.message or t.title
    if type(t.remediation) == "string" then t.remediation = { t.remediation } end
    t.remediation = t.remediation or {}
    t.refs = t.refs or {}
    REG[t.code] = t
    return t
  end
  function F.get(code) return REG[code] end
  function F.list()
    local out = {}
    for _, e in pairs(REG) do out[#out + 1] = e end
    table.sort(out, function(a, b) return a.code < b.code end)
    return out
  end
  function F.render(template, vars)
    return (tostring(template):gsub("{([%w_]+)}", function(k)
      local v = (vars or {})[k]
      return v == nil and "?" or tostring(v)
    end))
  end
  function F.make(code, vars, evidence)
    local e = REG[code]
    if not e then error("unknown finding code " .. tostring(code), 2) end
    vars = vars or {}
    local rem = {}
    if vars.fix then rem[1] = vars.fix end
    for _, r in ipairs(e.remediation) do rem[#rem + 1] = F.render(r, vars) end
    local ev = {}
    for _, l in ipairs(evidence or {}) do if l and l ~= "" then ev[#ev + 1] = l end end
    return { code = code, severity = vars.severity or e.severity, title = e.title, message = F.render(e.message, vars),
             evidence = ev, remediation = #rem > 0 and table.concat(rem, "; ") or nil, remediation_list = rem,
             refs = e.refs }
  end
end

local ATT_DOC = "https://docs.aws.amazon.com/enclaves/latest/user/set-up-attestation.html"
local KMS_DOC = "https://docs.aws.amazon.com/kms/latest/developerguide/conditions-nitro-enclaves.html"
local NSM_DOC = "aws/aws-nitro-enclaves-nsm-api docs/attestation_process.md"
local FRESH = "take a fresh document from the enclave (nsm get-attestation-document) and run nitrodiag attest on it"

-- ---- attestation documents -------------------------------------------------------------------------------------
local function att(code, title, message, remediation)
  F.define{ code = code, severity = "fail", title = title, message = message, remediation = remediation,
            refs = { doc = ATT_DOC, source = NSM_DOC } }
end
att("ATTEST_UNREADABLE", "The attestation document cannot be read",
  "{reason}", { "pass the document as raw CBOR, hex or base64 (the AttestationDocument field of a KMS Recipient is base64)" })
att("ATTEST_FIELDS", "The attestation document has a missing or malformed field", "{reason}", { FRESH })
att("ATTEST_ALG", "The attestation document is not signed with ES384", "{reason}",
  { "Nitro documents are COSE_Sign1 with ES384 (alg -35) by a P-384 key: this one was not made by the NSM" })
att("ATTEST_SIGNATURE", "The attestation document's signature does not verify", "{reason}",
  { "the document was modified after the NSM signed it (re-encoded, truncated or edited): pass it through unchanged", FRESH })
att("ATTEST_ROOT", "The attestation document does not chain to the AWS Nitro Enclaves root", "{reason}",
  { "a document from a real enclave chains to AWS_NitroEnclaves_Root-G1; for a development PKI pass its root with root=ROOT.pem" })
att("ATTEST_CHAIN_ORDER", "The attestation document's cabundle is out of order", "{reason}",
  { "cabundle runs root first, then each intermediate, the certificate's issuer last; the NSM writes it so: do not reorder it" })
att("ATTEST_CHAIN", "The attestation document's certificate chain does not verify", "{reason}", { FRESH })
att("ATTEST_EXPIRED", "A certificate had expired at the document's time", "{reason}",
  { "the host clock or the document is wrong: check timedatectl, then " .. FRESH })
att("ATTEST_NOT_YET_VALID", "A certificate was not yet valid at the document's time", "{reason}",
  { "the document's timestamp is before its certificates: check the enclave's and host's clock, then " .. FRESH })
att("ATTEST_CA", "The attestation document's chain breaks a CA constraint", "{reason}", { FRESH })
att("ATTEST_NONCE", "The attestation document's nonce is not the expected one", "{reason}",
  { "a replayed or stale document: request a new one with the current nonce" })
F.define{ code = "ATTEST_DEV_DOCUMENT", severity = "fail", title = "A development stand-in, not an attestation document",
  message = "module_id is {module_id}: nitrodiag's development document (no NSM, all-zero PCRs, no signature); real KMS refuses it",
  remediation = { "run the enclave application inside a real enclave (/dev/nsm present) to get a signed document" },
  refs = { source = "core/nd_attest.h ND_ATTEST_DEV_MODULE_ID" } }
F.define{ code = "ATTEST_STALE", severity = "warn", title = "The document verified at its own time but its chain is no longer valid",
  message = "{reason}: KMS checks the chain when it receives the document, so a stored document cannot be replayed",
  remediation = { "attestation documents are for one request: " .. FRESH }, refs = { doc = ATT_DOC } }
F.define{ code = "ATTEST_DEBUG_MODE", severity = "warn", title = "The enclave runs in debug mode: PCR0, PCR1 and PCR2 are all zero",
  message = "PCR0, PCR1 and PCR2 are all zero: the enclave was started with --debug-mode, and no KMS condition on ImageSha384 or PCR0-2 can match",
  remediation = { "nitro-cli terminate-enclave --enclave-id <id>; nitro-cli run-enclave … without --debug-mode" },
  refs = { doc = ATT_DOC } }
F.define{ code = "ATTEST_PUBLIC_KEY_NOT_RSA", severity = "warn", title = "The document's public_key is not what KMS Recipient needs",
  message = "public_key is {pk_type}{pk_bits}: KMS encrypts CiphertextForRecipient to an RSA key given as a DER SubjectPublicKeyInfo (RSAES_OAEP_SHA_256)",
  remediation = { "put the enclave's RSA-2048 (or larger) public key, DER SubjectPublicKeyInfo, in the attestation request" },
  refs = { doc = KMS_DOC } }

-- ---- KMS key policies ------------------------------------------------------------------------------------------
local function pol(code, severity, title, message, remediation)
  F.define{ code = code, severity = severity, title = title, message = message, remediation = remediation,
            refs = { doc = KMS_DOC } }
end
pol("KMS_POLICY_UNREADABLE", "fail", "The key policy cannot be read", "{reason}",
  { "aws kms get-key-policy --key-id <key> --policy-name default --output text > policy.json" })
pol("KMS_POLICY_ALLOWED", "ok", "The enclave's call is allowed", "{action} with a Recipient is allowed by statement {sid}", {})
pol("KMS_POLICY_EXPLICIT_DENY", "fail", "The enclave's call is denied by an explicit Deny",
  "{action} with a Recipient is denied by statement {sid}{why}",
  { "an explicit Deny beats every Allow: narrow the Deny (its Condition) so the enclave's measurements do not match it" })
pol("KMS_POLICY_NOT_ALLOWED", "fail", "No statement allows the enclave's call",
  "{action} with a Recipient is not allowed: no Allow statement matches{why} (default deny)",
  { "add or fix an Allow for {action} whose kms:RecipientAttestation conditions hold the enclave's measurements (StringEqualsIgnoreCase)" })
pol("KMS_POLICY_UNKNOWN", "warn", "The outcome depends on values not given", "{action}: {why}",
  { "give the missing measurements (attest=DOC, or role_arn= / instance_id= for PCR3 / PCR4)" })
pol("KMS_POLICY_BAD_CONDITION_KEY", "fail", "A condition key is not a valid attestation key",
  "condition key {key} in statement {sid} is not a KMS attestation key{hint}: the condition can never be met as intended",
  { "use kms:RecipientAttestation:ImageSha384 or kms:RecipientAttestation:PCR<n> (n = 0..31)" })
pol("KMS_POLICY_UNKNOWN_OPERATOR", "fail", "A condition operator is not an IAM operator",
  "condition operator {op} in statement {sid} is not an IAM condition operator{hint}",
  { "use StringEqualsIgnoreCase (AWS's examples), StringEquals, StringLike, with ForAnyValue:/ForAllValues: or IfExists as needed" })
pol("KMS_POLICY_VALUE_FORMAT", "warn", "A PCR value in the policy can never match",
  "{key} = {value} in statement {sid}: {why}",
  { "use the 96 lowercase hex digits of the measurement (nitro-cli describe-eif / nitrodiag attest), or StringEqualsIgnoreCase" })
pol("KMS_POLICY_PCR_MISMATCH", "fail", "A PCR condition does not hold the enclave's measurement",
  "statement {sid} expects {key} = {expected}, the enclave has {actual}{source}",
  { "put the enclave's value in the policy, or rebuild/run the enclave that the policy names" })
pol("KMS_POLICY_DEBUG_MODE", "warn", "A debug-mode enclave can never meet these conditions",
  "{detail}: a debug-mode enclave reports all-zero PCR0-2, so these conditions never hold for it",
  { "run the enclave without --debug-mode for KMS calls; debug mode is for reading the console only" })
pol("KMS_POLICY_UNCONDITIONED_ALLOW", "warn", "An Allow without attestation conditions makes the PCR conditions pointless",
  "statement {sid} allows {actions} to {principal} without any kms:RecipientAttestation condition: the parent instance (or any principal it names) can call KMS without an enclave",
  { "add the kms:RecipientAttestation conditions to statement {sid}, or remove the enclave's actions from it",
    "for the account-root statement (Enable IAM User Permissions), make sure no IAM policy in the account grants these actions without conditions" })
pol("KMS_POLICY_DENY_BLOCKS_ENCLAVE", "fail", "A Deny statement also blocks the enclave's own calls",
  "statement {sid} denies {action} even when the measurements match{why}",
  { "add a condition to the Deny that excludes the enclave (e.g. StringNotEqualsIgnoreCase on kms:RecipientAttestation:ImageSha384)" })
pol("KMS_POLICY_ONLY_NON_RECIPIENT", "fail", "The policy allows the call only without a Recipient",
  "{action} is allowed without a Recipient but not with one: the enclave's attested calls are refused while the host's plain calls pass",
  { "move the kms:RecipientAttestation conditions into an Allow that the enclave's calls match" })

F.define{ code = "KMS_POLICY_PCR3_NOT_ROLE", severity = "warn", title = "PCR3 is not the hash of the given role ARN",
  message = "PCR3 from {source} is {actual}, but SHA384(48 zero bytes ‖ \"{role_arn}\") is {expected}: {why}",
  remediation = { "use the role ARN of the instance profile attached to the parent instance (aws ec2 describe-iam-instance-profile-associations); the NSM measures it when the enclave starts" },
  refs = { doc = ATT_DOC } }
F.define{ code = "KMS_POLICY_PCR4_NOT_INSTANCE", severity = "warn", title = "PCR4 is not the hash of the given instance id",
  message = "PCR4 from {source} is {actual}, but SHA384(48 zero bytes ‖ \"{instance_id}\") is {expected}: the enclave runs on another instance",
  remediation = { "compare with the parent's instance id: curl -s -H \"X-aws-ec2-metadata-token: $TOKEN\" http://169.254.169.254/latest/meta-data/instance-id" },
  refs = { doc = ATT_DOC } }
F.define{ code = "KMS_POLICY_PCR8_NOT_CERT", severity = "warn", title = "PCR8 is not that of the given certificate",
  message = "PCR8 from {source} is {actual}, the certificate {cert} gives {expected}: the EIF was signed with another certificate",
  remediation = { "nitro-cli describe-eif --eif-path <eif> (SigningCertificate) and nitro-cli pcr --signing-certificate <cert.pem>" },
  refs = { doc = ATT_DOC } }

-- ---- signed EIFs -----------------------------------------------------------------------------------------------
if not F.get("SIGNING_CERT_EXPIRED") then
  F.define{ code = "SIGNING_CERT_EXPIRED", severity = "fail", title = "The EIF's signing certificate has expired or is invalid",
    message = "the EIF signature check failed: the signing certificate is expired or does not verify",
    remediation = { "nitro-cli describe-eif --eif-path <eif> (SigningCertificate dates)",
      "re-sign with a valid certificate: nitro-cli build-enclave … --signing-certificate cert.pem --private-key key.pem" },
    refs = { nitro_cli = "E59", issues = { "aws/aws-nitro-enclaves-cli#243" } } }
end
F.define{ code = "SIGNING_CERT_EXPIRES_SOON", severity = "warn", title = "The EIF's signing certificate expires within 30 days",
  message = "the signing certificate ({subject}) expires on {not_after}: after that run-enclave refuses this EIF with E59",
  remediation = { "issue a new signing certificate and re-sign: nitro-cli sign-eif --eif-path <eif> --private-key key.pem --signing-certificate new.pem",
    "PCR8 changes with the certificate: update kms:RecipientAttestation:PCR8 in the key policy at the same time" },
  refs = { nitro_cli = "E59", source = "aws-nitro-enclaves-image-format src/utils/mod.rs PcrSignatureChecker::verify" } }
F.define{ code = "EIF_SIGNATURE_INVALID", severity = "fail", title = "The EIF's signature does not verify",
  message = "SignatureCheck is false: {reason}",
  remediation = { "re-sign the EIF: nitro-cli sign-eif --eif-path <eif> --private-key key.pem --signing-certificate cert.pem" },
  refs = { nitro_cli = "E59" } }

return F
