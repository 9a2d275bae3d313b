-- `nitrodiag kms-policy` and `nitrodiag attest` through the real CLI (--json): outcomes, the deciding statement,
-- findings, exit codes, with measurements from a real NSM document (tests/fixtures/attest) and given by hand.
local json = require "nd.json"
local fs = require "nd.fs"
local attest = require "nd.attest"

local FIX = os.getenv("ND_SOURCE_DIR") .. "/tests/fixtures/attest/"
local REAL, DEBUG = FIX .. "nitrite-2024-09-07.b64", FIX .. "nitrite-debug-2024-09-07.b64"
local ROLE = "arn:aws:iam::111122223333:role/parent"
local PCR0 = "e72a46ca80a260fb044a125442f0c7e331813bcbaf9724d9f3857758992766f2d65710a27aa94ae3949dd54e7c9fe86a"
local PCR4 = attest.pcr_extend("i-0a22e5c5f24d22174")

local function run(args)
  local argv = { spec.nitrodiag, "--json" }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  argv.env = { PATH = os.getenv("PATH"), HOME = "/root", NITRODIAG_PATH = "" }
  argv.timeout = 60
  local r = assert(spec.run(argv))
  return json.decode(r.stdout), r
end

local function codes(res)
  local out = {}
  for _, f in ipairs(res.findings) do
    if f.severity == "fail" or f.severity == "warn" then out[#out + 1] = f.code end
  end
  table.sort(out)
  return out
end

local function policy(statements)
  local path = spec.tmpdir() .. "/policy.json"
  assert(fs.write(path, json.encode({ Version = "2012-10-17", Statement = statements })))
  return path
end

local function enclave_statement(cond)
  return { Sid = "Enclave", Effect = "Allow", Principal = { AWS = ROLE }, Action = { "kms:Decrypt", "kms:GenerateDataKey" },
           Resource = "*", Condition = cond }
end

describe("kms-policy", function()
  it("allows the real document's image and quotes the deciding statement", function()
    local p = policy{ enclave_statement{ StringEqualsIgnoreCase = { ["kms:RecipientAttestation:ImageSha384"] = PCR0:upper(),
                                                                    ["kms:RecipientAttestation:PCR4"] = PCR4 } } }
    local res, r = run{ "kms-policy", p, "attest=" .. REAL, "role_arn=" .. ROLE }
    eq(r.exit_code, 0, r.stdout)
    eq(#res.decisions, 2)
    eq(res.decisions[1].action, "kms:Decrypt")
    eq(res.decisions[1].outcome, "allowed")
    eq(res.decisions[1].statement, "Enclave")
    match(res.decisions[1].quoted, "ImageSha384")
    eq(res.measurements["4"], PCR4)
  end)
  it("a debug-mode enclave is refused, and says so", function()
    local p = policy{ enclave_statement{ StringEqualsIgnoreCase = { ["kms:RecipientAttestation:PCR0"] = PCR0 } } }
    local res, r = run{ "kms-policy", p, "attest=" .. DEBUG }
    eq(r.exit_code, 1)
    eq(res.decisions[1].outcome, "not_allowed")
    -- one refusal and one debug-mode finding per call (Decrypt, GenerateDataKey), and the PCR0 that differs
    eq(codes(res), { "KMS_POLICY_DEBUG_MODE", "KMS_POLICY_DEBUG_MODE", "KMS_POLICY_NOT_ALLOWED", "KMS_POLICY_NOT_ALLOWED",
                     "KMS_POLICY_PCR_MISMATCH" })
  end)
  it("an explicit deny beats the allow", function()
    local p = policy{ enclave_statement{ StringEqualsIgnoreCase = { ["kms:RecipientAttestation:ImageSha384"] = PCR0 } },
      { Sid = "OnlyOtherImage", Effect = "Deny", Principal = "*", Action = "kms:*", Resource = "*",
        Condition = { StringNotEqualsIgnoreCase = { ["kms:RecipientAttestation:ImageSha384"] = string.rep("1", 96) } } } }
    local res, r = run{ "kms-policy", p, "pcr0=" .. PCR0, "action=kms:Decrypt" }
    eq(r.exit_code, 1)
    eq(res.decisions[1].outcome, "denied")
    eq(res.decisions[1].statement, "OnlyOtherImage")
    eq(codes(res), { "KMS_POLICY_EXPLICIT_DENY" })
  end)
  it("a Deny without attestation conditions blocks the enclave too", function()
    local p = policy{ enclave_statement{ StringEqualsIgnoreCase = { ["kms:RecipientAttestation:ImageSha384"] = PCR0 } },
      { Sid = "NoDecrypt", Effect = "Deny", Principal = { AWS = "*" }, Action = "kms:Decrypt", Resource = "*" } }
    local res = run{ "kms-policy", p, "pcr0=" .. PCR0, "action=kms:Decrypt" }
    eq(codes(res), { "KMS_POLICY_DENY_BLOCKS_ENCLAVE" })
  end)
  it("a policy that allows only calls without a Recipient", function()
    local p = policy{ enclave_statement{ Null = { ["kms:RecipientAttestation:ImageSha384"] = "true" } } }
    local res = run{ "kms-policy", p, "pcr0=" .. PCR0, "action=kms:Decrypt" }
    eq(res.decisions[1].without_recipient, "allowed")
    eq(codes(res), { "KMS_POLICY_ONLY_NON_RECIPIENT", "KMS_POLICY_UNCONDITIONED_ALLOW" })
  end)
  it("PCR3 from the role ARN: a mismatch is named", function()
    local want = attest.pcr_extend("arn:aws:iam::111122223333:role/other")
    local p = policy{ enclave_statement{ StringEqualsIgnoreCase = { ["kms:RecipientAttestation:PCR3"] = want } } }
    local res, r = run{ "kms-policy", p, "role_arn=" .. ROLE, "action=kms:Decrypt" }
    eq(r.exit_code, 1)
    eq(codes(res), { "KMS_POLICY_NOT_ALLOWED", "KMS_POLICY_PCR_MISMATCH" })
    local f
    for _, x in ipairs(res.findings) do if x.code == "KMS_POLICY_PCR_MISMATCH" then f = x end end
    match(f.message, "role_arn=arn:aws:iam::111122223333:role/parent")
  end)
  it("PCR3 and PCR8 computed the usual wrong ways are named", function()
    local codec = require "nd.codec"
    local dir = spec.tmpdir()
    local pem = dir .. "/cert.pem"
    assert(fs.write(pem, attest.AWS_ROOT_PEM))
    local der = codec.b64decode((attest.AWS_ROOT_PEM:match("CERTIFICATE%-%-%-%-%-(.-)%-%-%-%-%-END"):gsub("%s", "")))
    local p = policy{ enclave_statement{ StringEqualsIgnoreCase = {
      ["kms:RecipientAttestation:PCR3"] = codec.sha384(ROLE),
      ["kms:RecipientAttestation:PCR8"] = codec.sha384(der) } } }
    local res = run{ "kms-policy", p, "role_arn=" .. ROLE, "cert=" .. pem, "action=kms:Decrypt" }
    local rems = {}
    for _, f in ipairs(res.findings) do
      if f.code == "KMS_POLICY_PCR_MISMATCH" then rems[#rems + 1] = f.remediation end
    end
    table.sort(rems)
    eq(#rems, 2)
    match(rems[1], "^the policy's value is SHA384 of the certificate, not extended")
    match(rems[2], "^the policy's value is SHA384 of the role ARN without the 48 zero bytes first")
  end)
  it("the document's PCR3/PCR4 against a given role ARN and instance id", function()
    local p = policy{ enclave_statement{ StringEqualsIgnoreCase = { ["kms:RecipientAttestation:ImageSha384"] = PCR0 } } }
    local res = run{ "kms-policy", p, "attest=" .. REAL, "role_arn=" .. ROLE, "instance_id=i-0a22e5c5f24d22174",
                     "action=kms:Decrypt" }
    eq(codes(res), { "KMS_POLICY_PCR3_NOT_ROLE" })
    match(res.findings[1].message, "had no IAM role")
    res = run{ "kms-policy", p, "attest=" .. REAL, "instance_id=i-1234567890abcdef0", "action=kms:Decrypt" }
    eq(codes(res), { "KMS_POLICY_PCR4_NOT_INSTANCE" })
  end)
  it("PCR3 unknown gives an unknown outcome, not a guess", function()
    local p = policy{ enclave_statement{ StringEqualsIgnoreCase = { ["kms:RecipientAttestation:PCR3"] = PCR4 } } }
    local res = run{ "kms-policy", p, "pcr0=" .. PCR0, "action=kms:Decrypt" }
    eq(res.decisions[1].outcome, "unknown")
    eq(codes(res), { "KMS_POLICY_UNKNOWN" })
  end)
  it("measurements of a signed EIF: PCR0 from the image, PCR8 from its certificate, cert= cross-checked", function()
    local eif = require "nd.eif"
    local dir = spec.tmpdir()
    local info = assert(eif.write(dir .. "/app.eif", { kernel = string.rep("k", 4096), cmdline = "console=ttyS0",
      ramdisks = { "bootstrap", "customer" }, certificate = attest.AWS_ROOT_PEM, signature = "x" }))
    local pcr8 = assert(eif.pcr8(attest.AWS_ROOT_PEM))
    eq(info.Measurements.PCR8, pcr8)
    local p = policy{ enclave_statement{ StringEqualsIgnoreCase = { ["kms:RecipientAttestation:PCR0"] = info.Measurements.PCR0,
                                                                    ["kms:RecipientAttestation:PCR8"] = pcr8 } } }
    local res, r = run{ "kms-policy", p, "eif=" .. dir .. "/app.eif" }
    eq(r.exit_code, 0, r.stdout)
    eq(res.decisions[1].outcome, "allowed")
    eq(res.measurements["8"], pcr8)
    -- cert= with the EIF's own certificate agrees (no PCR8_NOT_CERT)
    local pem = dir .. "/cert.pem"
    assert(fs.write(pem, attest.AWS_ROOT_PEM))
    res = run{ "kms-policy", p, "eif=" .. dir .. "/app.eif", "cert=" .. pem }
    eq(codes(res), {})
    -- a policy written for another certificate
    p = policy{ enclave_statement{ StringEqualsIgnoreCase = { ["kms:RecipientAttestation:PCR8"] = string.rep("0", 95) .. "1" } } }
    res, r = run{ "kms-policy", p, "eif=" .. dir .. "/app.eif", "action=kms:Decrypt" }
    eq(r.exit_code, 1)
    eq(codes(res), { "KMS_POLICY_NOT_ALLOWED", "KMS_POLICY_PCR_MISMATCH" })
  end)
  it("an unreadable policy is one clear error", function()
    local path = spec.tmpdir() .. "/bad.json"
    assert(fs.write(path, "{ not json"))
    local res, r = run{ "kms-policy", path }
    eq(r.exit_code, 1)
    eq(codes(res), { "KMS_POLICY_UNREADABLE" })
  end)
end)

describe("kms-logs and triage name the refused image", function()
  it("denied for image PCR0 …, and the kms-policy command to run", function()
    local path = spec.tmpdir() .. "/proxy.log"
    local line = json.encode({ event = "kms_proxy_response", request_id = "r1", ok = false,
      error_code = "upstream_access_denied", kms_request_id = "k-1", attempts = 1, attestation_pcr0 = PCR0,
      attestation_module_id = "i-0a22e5c5f24d22174-enc0191cceb4289903f" })
    assert(fs.write(path, line .. "\n"))
    for _, cmd in ipairs({ "kms-logs", "triage" }) do
      local res = run{ cmd, path }
      local f
      for _, x in ipairs(res.findings) do if x.code == "KMS_ACCESS_DENIED" then f = x end end
      truthy(f, cmd .. ": KMS_ACCESS_DENIED")
      match(f.message, "denied for image PCR0 " .. PCR0 .. " %(module i%-0a22e5c5f24d22174%-enc0191cceb4289903f%)")
      match(f.remediation, "nitrodiag kms%-policy POLICY%.json pcr0=" .. PCR0)
    end
  end)
end)

describe("attest", function()
  it("verifies the real document, reports its PCRs by index, exit 0", function()
    local res, r = run{ "attest", REAL }
    eq(r.exit_code, 0)
    eq(res.attestation.verified, true)
    eq(res.attestation.pcrs["0"], PCR0)
    eq(res.attestation.instance_id, "i-0a22e5c5f24d22174")
    eq(res.attestation.valid_now, false) -- its leaf lived three hours in 2024
  end)
  it("takes the document from a KMS Recipient in JSON", function()
    local path = spec.tmpdir() .. "/recipient.json"
    local b64 = fs.read(REAL):gsub("%s", "")
    assert(fs.write(path, json.encode({ KeyId = "alias/k", Recipient = { KeyEncryptionAlgorithm = "RSAES_OAEP_SHA_256",
                                                                        AttestationDocument = b64 } })))
    local res, r = run{ "attest", path }
    eq(r.exit_code, 0)
    eq(res.attestation.verified, true)
  end)
  it("reads a hex document from stdin with -", function()
    local raw = attest.decode(fs.read(REAL))
    local argv = { spec.nitrodiag, "--json", "attest", "-", stdin = require("nd.codec").hex(raw), timeout = 60,
                   env = { PATH = os.getenv("PATH"), HOME = "/root", NITRODIAG_PATH = "" } }
    local r = assert(spec.run(argv))
    eq(r.exit_code, 0, r.stderr)
    eq(json.decode(r.stdout).attestation.module_id, "i-0a22e5c5f24d22174-enc0191cceb4289903f")
  end)
  it("a test signer's document with a null unprotected header is refused, naming it", function()
    local res, r = run{ "attest", FIX .. "nitrite-selfsigned-2024-04-17.b64" }
    eq(r.exit_code, 1)
    eq(res.findings[1].code, "ATTEST_UNREADABLE")
    match(res.findings[1].message, "unprotected header %(item 2%) is null, not a map")
  end)
  it("a wrong nonce is not verified, exit 1", function()
    local res, r = run{ "attest", REAL, "nonce=00" }
    eq(r.exit_code, 1)
    eq(res.attestation.code, "nonce")
  end)
  it("a root that is not a PEM certificate is one clear error", function()
    local path = spec.tmpdir() .. "/junk.pem"
    assert(fs.write(path, "junk"))
    local res, r = run{ "attest", REAL, "root=" .. path }
    eq(r.exit_code, 1)
    match(res.steps[1].message, "root=.*not a PEM certificate")
  end)
  it("the AWS root given with root= verifies like the embedded one", function()
    local path = spec.tmpdir() .. "/other.pem"
    local pem = fs.read(os.getenv("ND_SOURCE_DIR") .. "/tests/fixtures/attest/../../attest/aws-root-g1.pem")
    assert(fs.write(path, pem))
    local res, r = run{ "attest", REAL, "root=" .. path }
    eq(r.exit_code, 0)
    eq(res.attestation.root_sha256, attest.AWS_ROOT_SHA256)
  end)
  it("a bad argument is a usage error, exit 2", function()
    local _, r = run{ "attest", REAL, "now=soon" }
    eq(r.exit_code, 2)
  end)
end)
