// The console's only way to the service: the public JSON API, with the API key kept in
// this tab's sessionStorage sent as `Authorization: Bearer`.

/** Where the key is kept (per tab, gone when the tab closes). */
export const KEY = 'consuma.apiKey';

/** The key was refused (401): the caller must sign in again. */
export class Refused extends Error {}

/** Any other error answer, with its problem+json body when there is one. */
export class ApiError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
  }
}

/** Calls the API; `body`, when given, goes as JSON. */
export async function api(path, method = 'GET', body = undefined) {
  const headers = { Accept: 'application/json' };
  const key = sessionStorage.getItem(KEY);
  if (key) headers.Authorization = `Bearer ${key}`;
  const init = { method, headers, cache: 'no-store' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (response.status === 401) throw new Refused();
  const answer = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, answer);
  return answer;
}
