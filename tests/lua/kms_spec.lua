-- nd.sigv4, nd.attest and nd.kms from Lua: the get-vanilla vector from the AWS suite, an attestation document
-- round trip, and KMS calls (success, a normalised error, a fault class) against nitrodiag-fake-kms.
local nd = require "nd"
local proc = require "nd.proc"
local sigv4 = require "nd.sigv4"
local attest = require "nd.attest"
local kms = require "nd.kms"

local FAKE = spec.binary_dir .. "/nitrodiag-fake-kms"
local SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"

-- Starts the fake and returns its handle, port and CA file (from its first two stdout lines).
local function start_fake(extra)
  local lines = {}
  local argv = { FAKE, "--max-seconds", "60" }
  for _, a in ipairs(extra or {}) do argv[#argv + 1] = a end
  argv.on_line = function(stream, line) if stream == "stdout" then lines[#lines + 1] = line end end
  local h = proc.start(argv)
  local t0 = nd.now()
  while #lines < 2 and nd.now() - t0 < 30 do nd.sleep(0.05) end
  assert(#lines >= 2, "the fake KMS did not start")
  return h, tonumber(lines[1]), lines[2]
end

describe("nd.sigv4", function()
  it("signs the AWS suite's get-vanilla request", function()
    local s = assert(sigv4.sign{ method = "GET", path = "/", headers = { Host = "example.amazonaws.com" },
                                 access_key_id = "AKIDEXAMPLE", secret_access_key = SECRET,
                                 region = "us-east-1", service = "service", date = "20150830T123600Z" })
    eq(s.signature, "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31")
    eq(s.signed_headers, "host;x-amz-date")
    eq(s.headers["X-Amz-Date"], "20150830T123600Z")
    match(s.authorization, "^AWS4%-HMAC%-SHA256 Credential=AKIDEXAMPLE/20150830/us%-east%-1/service/aws4_request")
  end)
  it("fails cleanly on a bad date", function()
    local s, err, code = sigv4.sign{ method = "GET", host = "h", access_key_id = "a", secret_access_key = "b",
                                     region = "r", service = "s", date = "yesterday" }
    eq(s, nil)
    match(err, "x%-amz%-date")
    eq(code, "EINVAL")
  end)
end)

describe("nd.attest", function()
  it("builds and parses a development document", function()
    local doc = assert(attest.dev_document{ public_key = "SPKI-BYTES", nonce = "n1", timestamp = 1700000000000 })
    local d = assert(attest.parse(doc))
    eq(d.module_id, attest.DEV_MODULE_ID)
    eq(d.dev, true)
    eq(d.public_key, "SPKI-BYTES")
    eq(d.nonce, "n1")
    eq(d.timestamp, 1700000000000)
    eq(d.pcrs[0], string.rep("0", 96))
    eq(#d.cabundle, 0)
  end)
  it("rejects garbage with a message", function()
    local d, err, code = attest.parse("\x84\x40\xa0")
    eq(d, nil)
    match(err, "^attestation: ")
    eq(code, "EBADMSG")
  end)
end)

describe("nd.kms", function()
  it("calls the fake KMS, keeps the connection, and reports errors", function()
    local h <close>, port, ca = start_fake()
    local c <close> = assert(kms.client{ region = "us-east-1", endpoint = "https://127.0.0.1:" .. port,
                                         ca_file = ca, proxy = "", connect_timeout = 10,
                                         credentials = { access_key_id = "AKIDEXAMPLE", secret_access_key = SECRET } })
    local r = assert(c:call("GenerateDataKey", { KeyId = "alias/ephemeral-ml-test", KeySpec = "AES_256" }))
    eq(r.ok, true)
    eq(r.status, 200)
    eq(#r.request_id, 36)
    truthy(r.json.CiphertextBlob)
    local d = assert(c:call("Decrypt", { CiphertextBlob = r.json.CiphertextBlob }, { timeout = 30 }))
    eq(d.json.Plaintext, r.json.Plaintext)
    eq(d.new_connection, false)
    local v = assert(c:call("GenerateDataKey", '{"KeyId":"alias/ephemeral-ml-test"}'))
    eq(v.ok, false)
    eq(v.error_code, "ValidationException")
    eq(v.class, "client_error")
    eq(v.retryable, false)
    eq(c:stats().connections, 1)
    -- a fault class: throttling, through the fake's control endpoint
    local ctl <close> = assert(kms.client{ region = "us-east-1", endpoint = "https://127.0.0.1:" .. port,
                                           ca_file = ca, proxy = "", connect_timeout = 10,
                                           credentials = { access_key_id = "x",
                                           secret_access_key = "y" } })
    local t = assert(c:call("GenerateRandom", { NumberOfBytes = 8 }))
    eq(t.ok, true)
    local bad = assert(ctl:call("GenerateRandom", { NumberOfBytes = 8 }))
    eq(bad.error_code, "UnrecognizedClientException")
    eq(bad.class, "access_denied")
    h:signal("TERM")
    h:wait()
    local down = assert(c:call("GenerateRandom", { NumberOfBytes = 8 }, { timeout = 3 }))
    eq(down.ok, false)
    truthy(down.retryable, "a dead endpoint is retryable (unavailable)")
  end)
  it("classifies and normalises like the core", function()
    eq(kms.normalize_error("ThrottlingException:http://x", "Other"), "ThrottlingException")
    eq(kms.normalize_error(nil, "com.amazonaws.kms#NotFoundException"), "NotFoundException")
    local cls, retry = kms.classify(400, "ThrottlingException")
    eq(cls, "throttled")
    eq(retry, true)
    eq((kms.classify(0, "", "ETIMEDOUT")), "timeout")
    eq((kms.classify(400, "AccessDeniedException")), "access_denied")
  end)
  it("reads IMDSv2 from the fake IMDS", function()
    local lines = {}
    local h <close> = proc.start{ FAKE, "--imds", "--max-seconds", "60",
                                  on_line = function(stream, l) if stream == "stdout" then lines[#lines + 1] = l end end }
    local t0 = nd.now()
    while #lines < 1 and nd.now() - t0 < 30 do nd.sleep(0.05) end
    assert(#lines >= 1, "the fake IMDS did not start")
    local ep = "http://127.0.0.1:" .. lines[1]
    eq(kms.imds_get("/latest/meta-data/iam/security-credentials/", { endpoint = ep, timeout = 30 }), "nitrodiag-fake-role")
    local body, err, code = kms.imds_get("/latest/meta-data/nothing-here", { endpoint = ep, timeout = 30 })
    eq(body, nil)
    eq(code, "ENOENT")
    match(err, "404")
    local _, _, c2 = kms.imds_get("/latest/", { endpoint = "http://127.0.0.1:1", timeout = 10 }) -- refused at once
    eq(c2, "ECONNREFUSED")
  end)
  it("refuses a bad endpoint", function()
    local c, err, code = kms.client{ region = "us-east-1", endpoint = "http://127.0.0.1:1",
                                     credentials = { access_key_id = "a", secret_access_key = "b" } }
    eq(c, nil)
    match(err, "https")
    eq(code, "EINVAL")
  end)
end)
