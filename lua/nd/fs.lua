-- nd.fs — small file-system helpers over luv used by the engine, specs and runbooks: read/write whole files,
-- atomic writes, appends, temporary directories, recursive removal, existence checks, and the one search-path lookup
-- (runbooks, scenarios).
local uv = require "luv"

local M = {}

-- read(path) -> contents | nil, msg, code
function M.read(path)
  local fd, err, code = uv.fs_open(path, "r", 0)
  if not fd then return nil, err, code end
  local chunks = {}
  while true do
    local data, rerr, rcode = uv.fs_read(fd, 1 << 20, -1)
    if not data then uv.fs_close(fd) return nil, rerr, rcode end
    if #data == 0 then break end
    chunks[#chunks + 1] = data
  end
  uv.fs_close(fd)
  return table.concat(chunks)
end

-- Opens path with flags ("w" truncates, "a" appends), writes data, closes. true | nil, msg, code
local function put(path, flags, data, mode)
  local fd, err, code = uv.fs_open(path, flags, mode or tonumber("644", 8))
  if not fd then return nil, err, code end
  local ok, werr, wcode = uv.fs_write(fd, data, -1)
  uv.fs_close(fd)
  if not ok then return nil, werr, wcode end
  return true
end

-- write(path, data [, mode]) -> true | nil, msg, code   (truncates)
function M.write(path, data, mode) return put(path, "w", data, mode) end

-- write_atomic(path, data [, mode]): writes a temporary file beside path, then renames it over path.
function M.write_atomic(path, data, mode)
  local tmp = string.format("%s.tmp.%d", path, uv.os_getpid())
  local ok, err, code = M.write(tmp, data, mode)
  if not ok then uv.fs_unlink(tmp) return nil, err, code end
  ok, err, code = uv.fs_rename(tmp, path)
  if not ok then uv.fs_unlink(tmp) return nil, err, code end
  return true
end

function M.exists(path)
  return uv.fs_stat(path) ~= nil
end

function M.is_dir(path)
  local st = uv.fs_stat(path)
  return st ~= nil and st.type == "directory"
end

-- mkdir_p(path [, mode]) -> true | nil, msg, code
function M.mkdir_p(path, mode)
  local acc = path:sub(1, 1) == "/" and "" or "."
  for part in path:gmatch("[^/]+") do
    acc = acc .. "/" .. part
    local st = uv.fs_stat(acc)
    if not st then
      local ok, err, code = uv.fs_mkdir(acc, mode or tonumber("755", 8))
      if not ok and code ~= "EEXIST" then return nil, err, code end
    elseif st.type ~= "directory" then
      return nil, acc .. ": not a directory", "ENOTDIR"
    end
  end
  return true
end

-- tmpdir([prefix]) -> path of a new private directory under $TMPDIR or /tmp, named <prefix>-p<pid>-XXXXXX: the pid
-- of its owner lets the next run remove it when this one was killed (bundle.sweep, core/nd_tmp.h).
function M.tmpdir(prefix)
  local base = os.getenv("TMPDIR")
  if not base or base == "" then base = "/tmp" end
  return uv.fs_mkdtemp(string.format("%s/%s-p%d-XXXXXX", base, prefix or "nitrodiag", uv.os_getpid()))
end

-- rm_rf(path): removes a file or a directory tree; never follows symlinks. Returns true | nil, msg, code.
function M.rm_rf(path)
  local st = uv.fs_lstat(path)
  if not st then return true end
  if st.type == "directory" then
    local req = uv.fs_scandir(path)
    if req then
      while true do
        local name = uv.fs_scandir_next(req)
        if not name then break end
        local ok, err, code = M.rm_rf(path .. "/" .. name)
        if not ok then return nil, err, code end
      end
    end
    return uv.fs_rmdir(path)
  end
  return uv.fs_unlink(path)
end

-- list(dir) -> sorted names | nil, msg, code
function M.list(dir)
  local req, err, code = uv.fs_scandir(dir)
  if not req then return nil, err, code end
  local out = {}
  while true do
    local name = uv.fs_scandir_next(req)
    if not name then break end
    out[#out + 1] = name
  end
  table.sort(out)
  return out
end

-- append(path, data) -> true | nil, msg, code: adds data at the end of path (created 0644 when missing).
function M.append(path, data) return put(path, "a", data) end

-- find_lua(name, dirs [, accept]) -> path | nil, why — the one search-path lookup (runbooks, scenarios). A name
-- with a '/' or ending in .lua is a file path (why = "missing" when it does not exist); any other name must be a
-- plain word ([%w_.-]+; why = "bad name") and the first dirs[i]/<name>.lua that exists and that accept(path, dir)
-- takes (when given) wins (why = "unknown" when none).
function M.find_lua(name, dirs, accept)
  if name:find("/", 1, true) or name:match("%.lua$") then
    if M.exists(name) then return name end
    return nil, "missing"
  end
  if not name:match("^[%w_%-%.]+$") then return nil, "bad name" end
  for _, d in ipairs(dirs) do
    local p = d .. "/" .. name .. ".lua"
    if M.exists(p) and (not accept or accept(p, d)) then return p end
  end
  return nil, "unknown"
end

function M.basename(p) return (p:gsub("/+$", ""):match("[^/]*$")) end
function M.dirname(p)
  local d = p:gsub("/+$", ""):match("^(.*)/[^/]*$")
  if d == nil then return "." end
  if d == "" then return "/" end
  return d
end

return M
