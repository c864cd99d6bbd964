// The streaming guide's Node "Streaming with Event Emitter" sample, with the client it
// uses; only apiKey and baseURL differ, a message given on the command line replaces the
// guide's, and a failed stream is reported as an 'error' event.
import { EventEmitter } from 'events';
import OpenAI from 'openai';

const client = new OpenAI({
  apiKey: process.env.SAVEGATE_API_KEY || 'sk-savegate-xxxxxxxxxxxxx',
  baseURL: process.env.SAVEGATE_BASE_URL || 'http://127.0.0.1:8000/v1'
});

async function streamWithEvents(message, model = 'gpt-4') {
  const emitter = new EventEmitter();
  const stream = await client.chat.completions.create({
    model: model,
    messages: [{ role: 'user', content: message }],
    stream: true
  });

  let fullResponse = '';
  (async () => {
    for await (const chunk of stream) {
      const content = chunk.choices[0]?.delta?.content || '';
      if (content) {
        fullResponse += content;
        emitter.emit('chunk', content);
      }
    }
    emitter.emit('done', fullResponse);
  })().catch((error) => emitter.emit('error', error));

  return emitter;
}

// Usage
const stream = await streamWithEvents(process.argv[2] || 'Write a poem');
stream.on('chunk', (chunk) => {
  process.stdout.write(chunk);
});
stream.on('done', (fullResponse) => {
  console.log('\n\nFull response received!');
});
stream.on('error', (error) => {
  console.error(`\nStream failed: ${error.message}`);
  process.exitCode = 1;
});
