-- Orthanc as the PACS in front of ainode: forward each stable source series to the node.
-- Load with "LuaScripts": ["orthanc/autoforward.lua"] in the Orthanc configuration.
-- Results coming back from ainode (SEG, SR, SC, KO) are not forwarded again.

local FORWARD_MODALITIES = { CT = true, MR = true, CR = true, DX = true }

function OnStableSeries(seriesId, tags, metadata)
  local modality = tags['Modality']
  if modality ~= nil and FORWARD_MODALITIES[modality] then
    print('ainode autoforward: series ' .. seriesId .. ' (' .. modality .. ')')
    SendToModality(seriesId, 'ainode')
  end
end
