-- scripts/ssm-pack.lua — turn a runbook invocation into AWS-RunShellScript commands for SSM Run Command, so a fleet
-- can run it: the runbook file (and any extra files) travel as base64 in short command lines, are reassembled with
-- `base64 -d` into a private directory on the host, checked against their SHA-256, and run with `nitrodiag run`;
-- the output ends with NITRODIAG_BUNDLE=<path> and NITRODIAG_EXIT=<status>. The old ssm_diag10.sh did the same by
-- hand because SSM silently truncated its long inline script. See docs/ssm-pack.md for the limits relied on.
--
-- A script cut short anywhere does nothing and fails loudly: the body is one shell function that only its last line
-- calls (cut inside it, the function never closes: a syntax error; cut after it, the EXIT trap set on the first line
-- sees that the body never started and says so, exit 3), and the EXIT trap removes the files it shipped on every
-- exit path (and the whole working directory when the run never started).
local codec = require "nd.codec"
local runbook = require "nd.runbook"
local fs = require "nd.fs"
local json = require "nd.json"

local rendered

-- Single-quotes a word for sh.
local function q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function words(s)
  local out = {}
  for w in (s or ""):gmatch("%S+") do out[#out + 1] = w end
  return out
end

-- The commands that recreate `name` (bytes `data`) in $ND_DIR, chunk base64 characters per line.
local function file_commands(cmds, name, data, chunk)
  local b64 = codec.b64encode(data)
  local target = '"$ND_DIR/' .. name .. '.b64"'
  if #b64 == 0 then
    cmds[#cmds + 1] = ": > " .. target
  end
  for i = 1, #b64, chunk do
    cmds[#cmds + 1] = string.format("printf '%%s' '%s' %s %s", b64:sub(i, i + chunk - 1), i == 1 and ">" or ">>", target)
  end
  local fail = function(what) return string.format('{ echo "nitrodiag-ssm: %s %s" >&2; exit 1; }', name, what) end
  cmds[#cmds + 1] = string.format('base64 -d %s > "$ND_DIR/%s" || %s', target, name, fail("could not be decoded"))
  cmds[#cmds + 1] = string.format('[ "$(sha256sum "$ND_DIR/%s" | cut -d " " -f 1)" = "%s" ] || %s', name,
    codec.sha256(data), fail("does not match its SHA-256 (truncated in transit?)"))
  cmds[#cmds + 1] = "rm -f " .. target
  return #b64
end

return {
  name = "ssm-pack",
  description = "Pack a runbook invocation into AWS-RunShellScript commands (SSM Run Command) for a fleet",
  categories = { "fleet", "ssm" },
  args = {
    { name = "runbook", type = "string", positional = 1, required = true,
      help = "the runbook to run on the hosts: a name (diag10) or a file" },
    { name = "runbook_args", type = "rest",
      help = "the runbook's own arguments, as you would give them to it: nitrodiag ssm-pack diag10 memory=2048" },
    { name = "args", type = "string", default = "",
      help = "more of its arguments, space-separated, for names ssm-pack itself uses: args=\"out=/var/tmp\"" },
    { name = "options", type = "string", default = "",
      help = "nitrodiag options for the remote run, e.g. \"--deadline 180 -v\"" },
    { name = "files", type = "list", help = "extra local files shipped next to the runbook (comma-separated)" },
    { name = "format", type = "string", default = "json", choices = { "json", "plain" },
      help = "json: the send-command parameters document {\"commands\":[…]}; plain: the commands as a shell script" },
    { name = "out", type = "string", help = "write the document to this file (otherwise it is printed after the verdict)" },
    { name = "chunk", type = "integer", default = 3000, min = 64, max = 16384,
      help = "base64 characters per command line (rounded down to a multiple of 4)" },
    { name = "max_total", type = "integer", default = 65536, min = 1024,
      help = "refuse to pack more than this many bytes of commands in one document" },
    { name = "dir", type = "string", default = "/tmp", help = "where the host makes its private working directory" },
    { name = "nitrodiag", type = "string", default = "nitrodiag", help = "the nitrodiag command on the hosts" },
    { name = "tail", type = "integer", default = 60, min = 1,
      help = "lines of the run's output echoed into the SSM output (the full output stays on the host)" },
  },
  deadline = 60,
  collect = false,
  steps = {
    { name = "resolve", timeout = 20, required = true,
      run = function(s)
        local a = s.args
        rendered = nil
        local path, err = runbook.find(a.runbook)
        if not path then s:fail(err) return end
        local def, lerr = runbook.load(path)
        if not def then s:fail("cannot load " .. path .. ": " .. lerr) return end
        local targs = {}
        for _, w in ipairs(a.runbook_args) do targs[#targs + 1] = w end
        for _, w in ipairs(words(a.args)) do targs[#targs + 1] = w end
        local parsed, perr = runbook.parse_args(def, targs)
        if not parsed then s:fail(perr) return end
        local files = { { name = fs.basename(path), path = path, data = assert(fs.read(path)) } }
        for _, f in ipairs(a.files or {}) do
          local data = fs.read(f)
          if not data then s:fail("cannot read " .. f) return end
          local base = fs.basename(f)
          if not base:match("^[%w_%.%-]+$") or base:match("^%.") then
            s:fail("file names shipped must be plain (letters, digits, _ . -): " .. base) return
          end
          for _, g in ipairs(files) do
            if g.name == base then s:fail("two files named " .. base) return end
          end
          files[#files + 1] = { name = base, path = f, data = data }
        end
        s.data.def, s.data.targs, s.data.files = def, targs, files
        s:log("runbook " .. def.name .. " from " .. path)
        s:ok(string.format("%s with %d argument(s), %d file(s)", def.name, #targs, #files))
      end },
    { name = "pack", timeout = 20, required = true,
      run = function(s)
        local a, d = s.args, s.data
        local chunk = a.chunk - a.chunk % 4
        -- Line 1: the EXIT (and TERM/INT) trap, complete in one line, so that it is in force whatever follows.
        local shipped = {}
        for _, f in ipairs(d.files) do
          shipped[#shipped + 1] = string.format('"$ND_DIR/%s" "$ND_DIR/%s.b64"', f.name, f.name)
        end
        local cmds = {
          [[trap 'nd_rc=$?; if [ "${ND_STARTED:-0}" != 1 ]; then echo "nitrodiag-ssm: this script is incomplete (cut short in transit?): nothing was run" >&2; nd_rc=3; fi; if [ -n "${ND_DIR:-}" ]; then nd_clean; fi; exit $nd_rc' EXIT]],
          "trap 'exit 143' TERM",
          "trap 'exit 130' INT",
          -- the files shipped are temporary on every path; the directory stays only when it holds the run's output
          "nd_clean() {",
          "rm -f " .. table.concat(shipped, " "),
          '[ -e "$ND_DIR/nitrodiag.out" ] || rm -rf "$ND_DIR"',
          "}",
          "nd_main() {",
          "ND_STARTED=1",
          "umask 077",
          'export HOME="${HOME:-/root}"',
          string.format('command -v %s >/dev/null 2>&1 || { echo "nitrodiag-ssm: %s is not installed on this host" >&2; exit 127; }',
            q(a.nitrodiag), a.nitrodiag:gsub('[^%w_%./%-]', "")),
          string.format("ND_DIR=$(mktemp -d %s/nitrodiag-ssm.XXXXXX) || exit 1", q(a.dir)),
        }
        local b64_total = 0
        for _, f in ipairs(d.files) do b64_total = b64_total + file_commands(cmds, f.name, f.data, chunk) end
        local run = { q(a.nitrodiag) }
        for _, o in ipairs(words(a.options)) do run[#run + 1] = q(o) end
        run[#run + 1] = '--out "$ND_DIR" run "$ND_DIR/' .. d.files[1].name .. '"'
        for _, w in ipairs(d.targs) do run[#run + 1] = q(w) end
        cmds[#cmds + 1] = string.format('echo "nitrodiag-ssm: running %s in $ND_DIR"', d.def.name)
        cmds[#cmds + 1] = '(cd "$ND_DIR" && ' .. table.concat(run, " ") .. ') > "$ND_DIR/nitrodiag.out" 2>&1; ND_RC=$?'
        cmds[#cmds + 1] = string.format('tail -n %d "$ND_DIR/nitrodiag.out"', a.tail)
        cmds[#cmds + 1] = [[ND_BUNDLE=$(sed -n 's|^bundle: \(/.*\)$|\1|p' "$ND_DIR/nitrodiag.out" | tail -n 1)]]
        cmds[#cmds + 1] = 'echo "NITRODIAG_OUTPUT=$ND_DIR/nitrodiag.out"'
        cmds[#cmds + 1] = 'echo "NITRODIAG_BUNDLE=${ND_BUNDLE:-none}"'
        cmds[#cmds + 1] = 'echo "NITRODIAG_EXIT=$ND_RC"'
        cmds[#cmds + 1] = "exit $ND_RC"
        cmds[#cmds + 1] = "}"
        -- The last line, and the only one that runs the body.
        cmds[#cmds + 1] = "nd_main"

        local total, longest = 0, 0
        for _, c in ipairs(cmds) do
          total = total + #c + 1
          if #c > longest then longest = #c end
        end
        if total > a.max_total then
          s:finding{ code = "SSM_TOO_BIG", severity = "fail",
            message = string.format("the commands take %d bytes, over max_total=%d", total, a.max_total),
            remediation = "ship big files another way (S3, or install them with the package) and pack only the runbook" }
          return
        end
        local params = { commands = json.array(cmds) }
        if d.def.deadline then params.executionTimeout = json.array({ tostring(math.ceil(d.def.deadline) + 60) }) end
        local doc
        if a.format == "json" then
          doc = json.encode(json.ordered(params, { "commands", "executionTimeout" }), { indent = 2 }) .. "\n"
        else
          doc = "#!/bin/sh\n# nitrodiag ssm-pack: " .. d.def.name .. (#d.targs > 0 and (" " .. table.concat(d.targs, " ")) or "")
            .. "\n" .. table.concat(cmds, "\n") .. "\n"
        end
        s.result.output = { format = a.format, commands = #cmds, bytes = total, longest_line = longest,
                            base64_chars = b64_total, chunk = chunk, parameters = params,
                            files = json.array((function()
                              local out = {}
                              for _, f in ipairs(d.files) do
                                out[#out + 1] = { name = f.name, path = f.path, bytes = #f.data, sha256 = codec.sha256(f.data) }
                              end
                              return out
                            end)()) }
        if a.out then
          local ok, err = fs.write(a.out, doc)
          if not ok then s:fail("cannot write " .. a.out .. ": " .. tostring(err)) return end
          s.result.output.out = a.out
          rendered = string.format("wrote %s: %d commands, %d bytes, longest line %d\n%s", a.out, #cmds, total, longest,
            a.format == "json" and string.format("send it with: aws ssm send-command --document-name AWS-RunShellScript --instance-ids i-… --parameters file://%s", a.out)
              or "run it on a host with: sh " .. a.out)
        else
          rendered = doc:gsub("\n$", "")
        end
        s:ok(string.format("%d commands, %d bytes, longest line %d characters", #cmds, total, longest))
      end },
  },
  report = function() return rendered end,
}
