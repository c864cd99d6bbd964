// The streaming guide's Node "Basic Streaming" sample; only apiKey and baseURL differ, and
// a message given on the command line replaces the guide's.
import OpenAI from 'openai';

const client = new OpenAI({
  apiKey: process.env.SAVEGATE_API_KEY || 'sk-savegate-xxxxxxxxxxxxx',
  baseURL: process.env.SAVEGATE_BASE_URL || 'http://127.0.0.1:8000/v1'
});

async function streamResponse(message, model = 'gpt-4') {
  const stream = await client.chat.completions.create({
    model: model,
    messages: [{ role: 'user', content: message }],
    stream: true
  });

  process.stdout.write('Response: ');
  for await (const chunk of stream) {
    const content = chunk.choices[0]?.delta?.content || '';
    process.stdout.write(content);
  }
  console.log();
}

// Usage
await streamResponse(process.argv[2] || 'Tell me a story about a robot');
