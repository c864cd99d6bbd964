// The streaming guide's Express SSE relay: POST /stream {"message": "..."} answers with
// `data: {"content": "..."}` events and `data: [DONE]`. Beyond the guide: it serves the
// chat page at /, ends the stream with an error event instead of hanging when the gateway
// refuses or fails, and cancels the upstream call when the browser goes away.
import express from 'express';
import OpenAI from 'openai';

const app = express();
const client = new OpenAI({
  apiKey: process.env.SAVEGATE_API_KEY || 'sk-savegate-xxxxxxxxxxxxx',
  baseURL: process.env.SAVEGATE_BASE_URL || 'http://127.0.0.1:8000/v1'
});
const chatPage = new URL('../web/chat.html', import.meta.url).pathname;

app.use(express.json());

app.get('/', (req, res) => res.sendFile(chatPage));

app.post('/stream', async (req, res) => {
  res.setHeader('Content-Type', 'text/event-stream');
  res.setHeader('Cache-Control', 'no-cache');
  res.setHeader('Connection', 'keep-alive');

  const upstream = new AbortController();
  res.on('close', () => upstream.abort());
  try {
    const stream = await client.chat.completions.create(
      {
        model: 'gpt-4',
        messages: [{ role: 'user', content: req.body.message }],
        stream: true
      },
      { signal: upstream.signal }
    );

    for await (const chunk of stream) {
      const content = chunk.choices[0]?.delta?.content || '';
      if (content) {
        res.write(`data: ${JSON.stringify({ content })}\n\n`);
      }
    }
  } catch (error) {
    if (upstream.signal.aborted) return;
    res.write(`data: ${JSON.stringify({ error: error.message })}\n\n`);
  }
  res.write('data: [DONE]\n\n');
  res.end();
});

const port = Number(process.env.PORT || 3000);
app.listen(port, '127.0.0.1', () => console.log(`Server running on port ${port}`));
