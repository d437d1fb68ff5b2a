// Every text a visitor or agent reads from the server, per shop: Chinese by default (as
// QChat), an English set, and any text overridden per shop. Templates name their values
// in braces; each text may use only the values listed for it.
export const LANGUAGES = ['zh', 'en'] as const;
export type Language = (typeof LANGUAGES)[number];

/** Each text and the values its template may use. */
export const TEXT_VALUES = {
  queuePosition: ['position'],
  requeued: ['position', 'agent'],
  closedToVisitor: [],
  closedToAgent: ['visitor'],
  idleClosedToVisitor: [],
  idleClosedToAgent: ['visitor'],
  transferToVisitor: ['from', 'to'],
  transferToOldAgent: ['visitor', 'to'],
  transferToNewAgent: ['from', 'visitor', 'reason'],
  transferReason: ['reason'],
  agentOffline: ['agent'],
  reminder: ['visitor', 'seconds'],
  statusSet: ['status'],
  ratingRequest: [],
  ratingThanks: ['score'],
  toHuman: [],
  botFailed: [],
  botHistory: ['visitor'],
  agentHistory: ['visitor', 'agent'],
  closed: ['opensAt', 'timeZone'],
  closedNoOpening: [],
  queueTimeout: [],
  queueLeft: [],
  leftToAgent: ['visitor', 'leftAt'],
  answerTimeoutToVisitor: ['from', 'to'],
  answerTimeoutToAgent: ['visitor', 'to', 'seconds'],
  answerTimeoutReason: ['agent', 'seconds'],
  awayAfterMissed: ['count'],
  monitorOn: ['visitor', 'agent'],
  monitorOff: ['visitor'],
  whisperToAgent: ['supervisor', 'visitor', 'text'],
  whisperSent: ['visitor', 'agent'],
  takenOver: ['supervisor'],
  contextToAgent: ['visitor', 'context'],
  contextDropped: ['parts'],
  historyToAgent: ['visitor', 'count'],
  historyNone: ['visitor'],
  historyFailed: ['visitor'],
  tagsNow: ['visitor', 'tags'],
  noteKept: ['visitor'],
  cannedList: ['count'],
  cannedNone: [],
  forgottenToAgent: ['visitor'],
} as const satisfies Record<string, readonly string[]>;

export type TextKey = keyof typeof TEXT_VALUES;
export type Texts = Record<TextKey, string>;

export const DEFAULT_TEXTS: Record<Language, Texts> = {
  zh: {
    queuePosition: '当前咨询人数较多，您排在第 {position} 位，请稍候。',
    requeued: '客服暂时离线，已为您重新排队，您排在第 {position} 位。',
    closedToVisitor: '本次会话已结束，感谢您的咨询。',
    closedToAgent: '与 {visitor} 的会话已关闭。',
    idleClosedToVisitor: '由于长时间没有新消息，本次会话已结束。如需帮助请再次发送消息。',
    idleClosedToAgent: '与 {visitor} 的会话因长时间无消息已关闭。',
    transferToVisitor: '客服 {from} 已将您的咨询转给客服 {to}，请稍候。',
    transferToOldAgent: '与 {visitor} 的会话已转给 {to}，请勿再回复。',
    transferToNewAgent: '{from} 将 {visitor} 的咨询转给了您{reason}。最近的消息如下。',
    transferReason: '，原因：{reason}',
    agentOffline: '{agent} 已离线',
    reminder: '您有用户消息未回复：{visitor} 已等待 {seconds} 秒。',
    statusSet: '您的接待状态已设为 {status}。',
    ratingRequest: '请为本次服务评分：回复 1 到 5 的数字（5 表示非常满意）。',
    ratingThanks: '感谢您的评价（{score} 分）！',
    toHuman: '正在为您转接人工客服，请稍候。',
    botFailed: '智能客服暂时无法回答，正在为您转接人工客服。',
    botHistory: '{visitor} 与智能客服的对话如下。',
    agentHistory: '{visitor} 与上一位客服的对话如下。',
    closed: '您好，现在不在服务时间。您的留言已收到，我们将于 {opensAt}（{timeZone}）开始服务，届时客服会尽快回复您。',
    closedNoOpening: '您好，现在不在服务时间。您的留言已收到，恢复服务后客服会尽快回复您。',
    queueTimeout: '抱歉，客服仍然繁忙。您的消息已作为留言保存，客服会尽快回复；您也可以稍后再来咨询。',
    queueLeft: '您已退出排队。您的消息已作为留言保存，客服会尽快回复。',
    leftToAgent: '{visitor} 于 {leftAt} 的留言如下。',
    answerTimeoutToVisitor: '客服 {from} 暂时未能回复，已为您转接客服 {to}，请稍候。',
    answerTimeoutToAgent: '您未在 {seconds} 秒内回复 {visitor}，会话已转给 {to}。',
    answerTimeoutReason: '{agent} 未在 {seconds} 秒内回复',
    awayAfterMissed: '您已连续 {count} 次未及时回复，接待状态已设为 away，不再分配新会话。发送 /status standard 恢复接待。',
    monitorOn: '您正在旁听 {visitor} 与 {agent} 的会话；发送 /unmonitor {visitor} 停止。',
    monitorOff: '已停止旁听 {visitor} 的会话。',
    whisperToAgent: '主管 {supervisor} 关于 {visitor} 的提示（仅您可见）：{text}',
    whisperSent: '已悄悄告知 {agent}（{visitor} 看不到）。',
    takenOver: '由主管 {supervisor} 接管',
    contextToAgent: '访客 {visitor} 的信息：{context}',
    contextDropped: '您的客户端发送的部分访客信息未被保存：{parts}。',
    historyToAgent: '{visitor} 以往的 {count} 次会话：',
    historyNone: '存档中没有 {visitor} 以往的会话。',
    historyFailed: '暂时无法读取 {visitor} 的会话存档，请稍后再发送 /history。',
    tagsNow: '与 {visitor} 的会话标签：{tags}',
    noteKept: '备注已保存（{visitor} 看不到）。',
    cannedList: '共 {count} 条快捷回复，发送 #名称 使用：',
    cannedNone: '本店没有快捷回复。',
    forgottenToAgent: '与 {visitor} 的会话已关闭：该访客的数据已按要求删除。',
  },
  en: {
    queuePosition: 'All our agents are busy. You are number {position} in the queue; please wait.',
    requeued: 'Your agent went offline. You are back in the queue at number {position}.',
    closedToVisitor: 'This conversation has ended. Thank you for contacting us.',
    closedToAgent: 'The conversation with {visitor} is closed.',
    idleClosedToVisitor: 'This conversation ended after a long silence. Write again whenever you need help.',
    idleClosedToAgent: 'The conversation with {visitor} was closed after a long silence.',
    transferToVisitor: 'Agent {from} handed your conversation to agent {to}; please wait a moment.',
    transferToOldAgent: 'The conversation with {visitor} now belongs to {to}; please do not reply any more.',
    transferToNewAgent: '{from} handed the conversation with {visitor} to you{reason}. The latest messages follow.',
    transferReason: ' (reason: {reason})',
    agentOffline: '{agent} went offline',
    reminder: 'A visitor is waiting for your reply: {visitor} has waited {seconds} s.',
    statusSet: 'Your status is now {status}.',
    ratingRequest: 'How did we do? Reply with a number from 1 to 5 (5 = very satisfied).',
    ratingThanks: 'Thank you for your rating ({score})!',
    toHuman: 'Connecting you to a human agent; please wait.',
    botFailed: 'Our assistant cannot answer right now; connecting you to a human agent.',
    botHistory: 'The conversation of {visitor} with the assistant follows.',
    agentHistory: 'The conversation of {visitor} with the previous agent follows.',
    closed:
      'We are closed right now. Your message has been kept; we open at {opensAt} ({timeZone}) and an agent will reply as soon as we can.',
    closedNoOpening: 'We are closed right now. Your message has been kept; an agent will reply as soon as we are open again.',
    queueTimeout:
      'Sorry, our agents are still busy. Your message has been kept and an agent will reply as soon as possible; you may also come back later.',
    queueLeft: 'You left the queue. Your message has been kept and an agent will reply as soon as possible.',
    leftToAgent: 'The message {visitor} left at {leftAt} follows.',
    answerTimeoutToVisitor: 'Agent {from} could not answer in time; agent {to} will help you now.',
    answerTimeoutToAgent: 'You did not answer {visitor} within {seconds} s; the conversation now belongs to {to}.',
    answerTimeoutReason: '{agent} did not answer within {seconds} s',
    awayAfterMissed:
      'You missed {count} chats in a row, so your status is now away and no new chats come to you. Send /status standard to take chats again.',
    monitorOn: 'You are monitoring the conversation of {visitor} with {agent}; send /unmonitor {visitor} to stop.',
    monitorOff: 'You no longer monitor the conversation of {visitor}.',
    whisperToAgent: 'Supervisor {supervisor} about {visitor} (only you see this): {text}',
    whisperSent: 'Whispered to {agent} ({visitor} does not see it).',
    takenOver: 'taken over by supervisor {supervisor}',
    contextToAgent: 'About visitor {visitor}: {context}',
    contextDropped: 'Part of what your client sent about you was not kept: {parts}.',
    historyToAgent: 'Earlier sessions of {visitor} ({count}):',
    historyNone: 'The archive has no earlier sessions of {visitor}.',
    historyFailed: 'The archive of {visitor}’s sessions cannot be read right now; send /history again in a moment.',
    tagsNow: 'Tags of the conversation with {visitor}: {tags}',
    noteKept: 'Note kept ({visitor} does not see it).',
    cannedList: '{count} canned replies; send #name to use one:',
    cannedNone: 'This shop has no canned replies.',
    forgottenToAgent: 'The conversation with {visitor} is closed: the visitor asked to be forgotten and its data was erased.',
  },
};

export const DEFAULT_NO_AGENT_TEXT: Record<Language, string> = {
  zh: '当前没有客服在线，请稍后再试。',
  en: 'No agent is available right now. Please try again later.',
};

/** The shop's texts: its language's defaults with its own overrides on top. */
export function resolveTexts(language: Language, overrides: Partial<Texts>): Texts {
  return { ...DEFAULT_TEXTS[language], ...overrides };
}

/** Why a text override is not acceptable, or undefined when it is. */
export function textProblem(key: string, template: unknown): string | undefined {
  if (!(key in TEXT_VALUES)) return `is not a text; use one of ${Object.keys(TEXT_VALUES).join(', ')}`;
  if (typeof template !== 'string' || template.length === 0 || template.length > 2000) return 'must be a string of 1 to 2000 characters';
  const allowed: readonly string[] = TEXT_VALUES[key as TextKey];
  const unknown = [...template.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).filter((n) => !allowed.includes(n));
  if (unknown.length) return `uses {${unknown[0]}}; it may use ${allowed.length ? allowed.map((n) => `{${n}}`).join(', ') : 'no values'}`;
  return undefined;
}

export function render(template: string, values: Record<string, string | number>): string {
  return template.replace(/\{(\w+)\}/g, (whole, name: string) => (name in values ? String(values[name]) : whole));
}
