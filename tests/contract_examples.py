"""The contract's client examples, byte for byte (trailing blanks included), and where the contract is."""

from tests.server_process import PROJECT

CONTRACT = PROJECT.parent / "shared" / "spec" / "orchestrator-service.md"

# The contract's Python client example, verbatim; only the port differs when it runs.
CONTRACT_PYTHON_EXAMPLE = """\
import requests
import json

# Create session
response = requests.post('http://localhost:8080/api/sessions', 
                        json={'topic': 'machine learning'})
session_id = response.json()['id']

# Stream progress
response = requests.post(f'http://localhost:8080/api/sessions/{session_id}/run',
                        stream=True)

for line in response.iter_lines():
    if line.startswith(b'data: '):
        data = json.loads(line[6:])
        print(f"Event: {data['type']}")
        
        if data['type'] == 'final':
            break
"""

# The contract's JavaScript client example, verbatim.
CONTRACT_JS_EXAMPLE = """\
// Create session
const response = await fetch('/api/sessions', {
  method: 'POST',
  headers: { 'Content-Type': 'application/json' },
  body: JSON.stringify({ topic: 'machine learning' })
});
const { id } = await response.json();

// Stream progress
const eventSource = new EventSource(`/api/sessions/${id}/run`);
eventSource.onmessage = (event) => {
  const data = JSON.parse(event.data);
  console.log('Event:', data.type, data.data);
  
  if (data.type === 'final') {
    eventSource.close();
  }
};
"""
