"""The vendor's own tools: issuing licences and receiving usage reports from appliances."""
