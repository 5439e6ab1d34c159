-- Orthanc as the PACS in front of ainode: forward each stable source series to the node.
-- Loaded by "LuaScripts" in orthanc/orthanc.json (Orthanc reads the path relative to that file).
--
-- Loop-safe: a series that the node itself sent (its instances' RemoteAET is the node's AE
-- title) is never forwarded back, whatever its modality; the node also refuses to process
-- its own results a second time (they are in its job store).

local NODE_AET = os.getenv('AINODE_AET') or 'AINODE'
local NODE_MODALITY = 'ainode'   -- the DicomModalities entry naming the node
local FORWARD_MODALITIES = { CT = true, MR = true, CR = true, DX = true }

local function SentByNode(seriesId)
  local instances = ParseJson(RestApiGet('/series/' .. seriesId .. '/instances'))
  for _, instance in ipairs(instances) do
    local names = ParseJson(RestApiGet('/instances/' .. instance['ID'] .. '/metadata'))
    for _, name in ipairs(names) do
      if name == 'RemoteAET' then
        local aet = RestApiGet('/instances/' .. instance['ID'] .. '/metadata/RemoteAET')
        if aet == NODE_AET then
          return true
        end
      end
    end
  end
  return false
end

function OnStableSeries(seriesId, tags, metadata)
  local modality = tags['Modality']
  if modality == nil or not FORWARD_MODALITIES[modality] then
    return
  end
  if SentByNode(seriesId) then
    print('ainode autoforward: series ' .. seriesId .. ' came from the node, not forwarded')
    return
  end
  print('ainode autoforward: series ' .. seriesId .. ' (' .. modality .. ') to the node')
  -- The REST store job sends the whole series on one association (Lua's SendToModality
  -- takes one instance in Orthanc 1.10).
  RestApiPost('/modalities/' .. NODE_MODALITY .. '/store', seriesId)
end
