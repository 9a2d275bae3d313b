-- nd.keypolicy against the documented IAM policy evaluation logic (IAM User Guide: "Policy evaluation logic",
-- "IAM JSON policy elements: Condition operators", "Single-valued vs. multivalued context keys"; KMS developer guide:
-- "Condition keys for AWS Nitro Enclaves"): a table of policies, calls and expected outcomes. The rules quoted:
-- docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html ("If the key … is not
-- present in the request context, the values do not match and the condition is false. If the policy condition requires
-- that the key is not matched, such as StringNotLike …, and the right key is not present, the condition is true …
-- except …IfExists and Null check"; StringEquals is case-sensitive, StringLike has * and ?) and
-- …/reference_policies_multi-value-conditions.html (operators AND, keys AND, values OR, negated values NOR).
local kp = require "nd.keypolicy"
local json = require "nd.json"

local P0, P1, P2 = string.rep("ab", 48), string.rep("cd", 48), string.rep("ef", 48)
local ROLE = "arn:aws:iam::111122223333:role/parent"
local IMG = "kms:RecipientAttestation:ImageSha384"

local function policy(statements)
  return assert(kp.parse(json.encode({ Version = "2012-10-17", Statement = statements })))
end

local function allow(cond, extra)
  local st = { Sid = "Enclave", Effect = "Allow", Principal = { AWS = ROLE }, Action = { "kms:Decrypt", "kms:GenerateDataKey" },
               Resource = "*", Condition = cond }
  for k, v in pairs(extra or {}) do st[k] = v end
  return st
end

local MEAS = { [0] = P0, [1] = P1, [2] = P2 }
for i = 3, 15 do MEAS[i] = string.rep("0", 96) end
local DEBUG = {}
for i = 0, 15 do DEBUG[i] = string.rep("0", 96) end

-- { name, statements, action, context ("recipient" | "plain" | "debug" | table), expected outcome, deciding Sid, opts }
local CASES = {
  { "IgnoreCase matches upper-case hex", { allow{ StringEqualsIgnoreCase = { [IMG] = P0:upper() } } }, "kms:Decrypt", "recipient", "allowed", "Enclave" },
  { "StringEquals is case-sensitive", { allow{ StringEquals = { [IMG] = P0:upper() } } }, "kms:Decrypt", "recipient", "not_allowed" },
  { "StringEquals with the lower-case value", { allow{ StringEquals = { [IMG] = P0 } } }, "kms:Decrypt", "recipient", "allowed", "Enclave" },
  { "ImageSha384 is PCR0", { allow{ StringEquals = { ["kms:RecipientAttestation:PCR0"] = P0 } } }, "kms:Decrypt", "recipient", "allowed", "Enclave" },
  { "a different image is not allowed", { allow{ StringEqualsIgnoreCase = { [IMG] = P1 } } }, "kms:Decrypt", "recipient", "not_allowed" },
  { "values of one key are alternatives (OR)", { allow{ StringEqualsIgnoreCase = { [IMG] = { P1, P0 } } } }, "kms:Decrypt", "recipient", "allowed", "Enclave" },
  { "keys of one operator must all hold (AND)", { allow{ StringEqualsIgnoreCase = { [IMG] = P0, ["kms:RecipientAttestation:PCR1"] = P2 } } }, "kms:Decrypt", "recipient", "not_allowed" },
  { "operators of one block must all hold (AND)", { allow{ StringEqualsIgnoreCase = { [IMG] = P0 }, StringEquals = { ["kms:RecipientAttestation:PCR2"] = P1 } } }, "kms:Decrypt", "recipient", "not_allowed" },
  { "explicit deny beats allow", { allow{ StringEqualsIgnoreCase = { [IMG] = P0 } }, { Sid = "NoDecrypt", Effect = "Deny", Principal = "*", Action = "kms:Decrypt", Resource = "*" } }, "kms:Decrypt", "recipient", "denied", "NoDecrypt" },
  { "a deny for other images lets this one through", { allow{ StringEqualsIgnoreCase = { [IMG] = P0 } }, { Sid = "OnlyThisImage", Effect = "Deny", Principal = "*", Action = "kms:*", Resource = "*", Condition = { StringNotEqualsIgnoreCase = { [IMG] = P0 } } } }, "kms:Decrypt", "recipient", "allowed", "Enclave" },
  { "… and denies another image", { allow{ StringEqualsIgnoreCase = { [IMG] = P1 } }, { Sid = "OnlyThat", Effect = "Deny", Principal = "*", Action = "kms:*", Resource = "*", Condition = { StringNotEqualsIgnoreCase = { [IMG] = P1 } } } }, "kms:Decrypt", "recipient", "denied", "OnlyThat" },
  { "negated operator with the key missing holds (call without Recipient is denied)", { allow{}, { Sid = "OnlyThisImage", Effect = "Deny", Principal = "*", Action = "kms:*", Resource = "*", Condition = { StringNotEqualsIgnoreCase = { [IMG] = P0 } } } }, "kms:Decrypt", "plain", "denied", "OnlyThisImage" },
  { "default deny: no statement for the action", { allow{ StringEqualsIgnoreCase = { [IMG] = P0 } } }, "kms:GenerateRandom", "recipient", "not_allowed" },
  { "Action wildcard", { allow({ StringEqualsIgnoreCase = { [IMG] = P0 } }, { Action = "kms:Generate*" }) }, "kms:GenerateDataKeyPair", "recipient", "allowed", "Enclave" },
  { "Action names are case-insensitive", { allow({ StringEqualsIgnoreCase = { [IMG] = P0 } }, { Action = "KMS:decrypt" }) }, "kms:Decrypt", "recipient", "allowed", "Enclave" },
  { "NotAction", { allow({ StringEqualsIgnoreCase = { [IMG] = P0 } }, { Action = json.null, NotAction = { "kms:Encrypt" } }) }, "kms:Decrypt", "recipient", "allowed", "Enclave" },
  { "condition key names are case-insensitive", { allow{ StringEqualsIgnoreCase = { ["KMS:RECIPIENTATTESTATION:IMAGESHA384"] = P0 } } }, "kms:Decrypt", "recipient", "allowed", "Enclave" },
  { "StringLike with *", { allow{ StringLike = { [IMG] = P0:sub(1, 10) .. "*" } } }, "kms:Decrypt", "recipient", "allowed", "Enclave" },
  { "StringLike with ?", { allow{ StringLike = { [IMG] = "?" .. P0:sub(2) } } }, "kms:Decrypt", "recipient", "allowed", "Enclave" },
  { "StringLike is case-sensitive", { allow{ StringLike = { [IMG] = P0:upper():sub(1, 10) .. "*" } } }, "kms:Decrypt", "recipient", "not_allowed" },
  { "a missing key fails a positive operator", { allow{ StringEquals = { ["kms:RecipientAttestation:PCR20"] = P0 } } }, "kms:Decrypt", "recipient", "not_allowed" },
  { "…IfExists holds when the key is missing", { allow{ StringEqualsIfExists = { ["kms:RecipientAttestation:PCR20"] = P0 } } }, "kms:Decrypt", "recipient", "allowed", "Enclave" },
  { "…IfExists still compares a present key", { allow{ StringEqualsIfExists = { [IMG] = P1 } } }, "kms:Decrypt", "recipient", "not_allowed" },
  { "Null true: only calls without a Recipient", { allow{ Null = { [IMG] = "true" } } }, "kms:Decrypt", "recipient", "not_allowed" },
  { "Null true allows the plain call", { allow{ Null = { [IMG] = "true" } } }, "kms:Decrypt", "plain", "allowed", "Enclave" },
  { "Null false: only calls with a Recipient", { allow{ Null = { [IMG] = "false" } } }, "kms:Decrypt", "plain", "not_allowed" },
  { "ForAnyValue matches the one value", { allow{ ["ForAnyValue:StringEqualsIgnoreCase"] = { [IMG] = { P1, P0 } } } }, "kms:Decrypt", "recipient", "allowed", "Enclave" },
  { "ForAnyValue with the key missing is false", { allow{ ["ForAnyValue:StringEquals"] = { [IMG] = P0 } } }, "kms:Decrypt", "plain", "not_allowed" },
  { "ForAllValues with the key missing is true", { allow{ ["ForAllValues:StringEquals"] = { [IMG] = P0 } } }, "kms:Decrypt", "plain", "allowed", "Enclave" },
  { "ForAllValues with another value is false", { allow{ ["ForAllValues:StringEquals"] = { [IMG] = P1 } } }, "kms:Decrypt", "recipient", "not_allowed" },
  { "a debug-mode enclave (all-zero PCRs) never matches", { allow{ StringEqualsIgnoreCase = { [IMG] = P0 } } }, "kms:Decrypt", "debug", "not_allowed" },
  { "an unknown PCR3 gives unknown, not a guess", { allow{ StringEqualsIgnoreCase = { ["kms:RecipientAttestation:PCR3"] = P1 } } }, "kms:Decrypt", { unknown3 = true }, "unknown", "Enclave" },
  { "a Principal that is not the caller", { allow({ StringEqualsIgnoreCase = { [IMG] = P0 } }, { Principal = { AWS = "arn:aws:iam::111122223333:role/other" } }) }, "kms:Decrypt", "recipient", "not_allowed", nil, { principal = ROLE } },
  { "the caller's role", { allow{ StringEqualsIgnoreCase = { [IMG] = P0 } } }, "kms:Decrypt", "recipient", "allowed", "Enclave", { principal = ROLE } },
  { "the account root delegates to IAM", { allow({}, { Principal = { AWS = "arn:aws:iam::111122223333:root" }, Action = "kms:*" }) }, "kms:Decrypt", "plain", "allowed", "Enclave", { principal = ROLE } },
  { "an invalid operator never holds", { allow{ StringEqual = { [IMG] = P0 } } }, "kms:Decrypt", "recipient", "not_allowed" },
}

local function ctx_for(c)
  if c == "recipient" then return kp.context(MEAS) end
  if c == "plain" then return kp.context(MEAS, { recipient = false }) end
  if c == "debug" then return kp.context(DEBUG) end
  local m = {}
  for k, v in pairs(MEAS) do m[k] = v end
  m.unknown = { [3] = true }
  return kp.context(m)
end

describe("nd.keypolicy evaluation (IAM semantics)", function()
  for _, c in ipairs(CASES) do
    it(c[1], function()
      local r = kp.evaluate(policy(c[2]), c[3], ctx_for(c[4]), c[7])
      eq(r.outcome, c[5])
      if c[6] then eq(r.statement and r.statement.sid, c[6]) end
    end)
  end
end)

local function codes(statements)
  local out = {}
  for _, i in ipairs(kp.lint(policy(statements))) do out[#out + 1] = i.code .. (i.vars.hint or "") end
  return out
end

describe("nd.keypolicy lint", function()
  it("a bare kms:RecipientAttestation is not a key", function()
    local c = codes{ allow{ StringEqualsIgnoreCase = { ["kms:RecipientAttestation"] = P0 } } }
    match(c[1], "^KMS_POLICY_BAD_CONDITION_KEY %(a bare")
  end)
  it("a misspelled key gets a suggestion", function()
    local c = codes{ allow{ StringEqualsIgnoreCase = { ["kms:RecipentAttestation:PCR0"] = P0, [IMG] = P0 } } }
    eq(c, { "KMS_POLICY_BAD_CONDITION_KEY (did you mean kms:RecipientAttestation:PCR0?)" })
  end)
  it("PCR indexes are 0..31 without leading zeros", function()
    local c = codes{ allow{ StringEqualsIgnoreCase = { ["kms:RecipientAttestation:PCR01"] = P0, ["kms:RecipientAttestation:PCR32"] = P0, [IMG] = P0 } } }
    eq(#c, 2)
    match(c[1], "leading zeros")
  end)
  it("an unknown operator gets a suggestion", function()
    local c = codes{ allow{ StringEqualsIgnorecase = { [IMG] = P0 } } }
    eq(c, { "KMS_POLICY_UNKNOWN_OPERATOR (did you mean StringEqualsIgnoreCase?)" })
  end)
  it("an Allow without attestation conditions is flagged (the account-root statement too)", function()
    local c = codes{ { Sid = "Enable IAM User Permissions", Effect = "Allow", Principal = { AWS = "arn:aws:iam::111122223333:root" }, Action = "kms:*", Resource = "*" },
                     allow{ StringEqualsIgnoreCase = { [IMG] = P0 } } }
    eq(c, { "KMS_POLICY_UNCONDITIONED_ALLOW" })
  end)
  it("a Null-only condition does not count as attestation", function()
    eq(codes{ allow{ Null = { [IMG] = "false" } } }, { "KMS_POLICY_UNCONDITIONED_ALLOW" })
  end)
  it("values that can never match", function()
    local l = kp.lint(policy{ allow{ StringEqualsIgnoreCase = { [IMG] = string.rep("a", 64) }, StringEquals = { ["kms:RecipientAttestation:PCR1"] = P1:upper() } } })
    eq(#l, 2)
    eq(l[1].code, "KMS_POLICY_VALUE_FORMAT")
  end)
  it("a clean enclave policy has nothing to say", function()
    eq(codes{ allow{ StringEqualsIgnoreCase = { [IMG] = P0, ["kms:RecipientAttestation:PCR8"] = P1 } } }, {})
  end)
  it("rejects what is not a policy", function()
    local p, err = kp.parse("{")
    eq(p, nil)
    match(err, "not JSON")
    p, err = kp.parse('{"Statement":[{"Effect":"Maybe"}]}')
    eq(p, nil)
    match(err, "Effect")
  end)
end)
