import { parentPort, workerData } from 'node:worker_threads';
import type { StreamLimits } from '../core/batching.js';
import { isAppError } from '../core/errors.js';
import type { PrepareAnswer, PrepareAsk } from './dev-sink-preparer.js';
import { prepareRequest } from './dev-sink-request.js';

/**
 * The dev sink's second thread: checks and splits request bodies (prepareRequest) while the main thread appends
 * earlier ones to DuckDB. Bodies come in as transferred bytes; the text and the batch's spans go back, the spans
 * transferred. Asks are answered one at a time, in the order they came.
 */
const limits = (workerData as { limits: StreamLimits }).limits;
const port = parentPort!;

port.on('message', ({ id, body, compressed }: PrepareAsk) => {
  let answer: PrepareAnswer;
  try {
    const prepared = prepareRequest(body, compressed, limits);
    const { members, memberEnds, backslashes, firstKinds, kindMasks } = prepared.batch;
    answer = { id, prepared };
    const spans = [members, memberEnds, backslashes, firstKinds, kindMasks].map((a) => a.buffer as ArrayBuffer);
    port.postMessage(answer, spans);
    return;
  } catch (err) {
    answer = isAppError(err)
      ? { id, refusal: { code: err.code, message: err.message, details: err.details } }
      : { id, failure: (err as Error).stack ?? String(err) };
  }
  port.postMessage(answer);
});
