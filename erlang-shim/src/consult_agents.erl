%% What the sidecars hear of agents: their sessions and presence, as
%% notifications to every connection (only agents: nobody else's sessions
%% matter), and a report of those online when a sidecar (re)connects or asks.
%% Hooks registered by mod_consult; report_agents/2 is the connections' on_watch.
%%
%% Each node speaks only for the sessions it holds: the hooks run on the
%% session's node, and the report leaves out sessions on other nodes (which
%% ejabberd_sm lists cluster-wide), since a sidecar files what a stream
%% reports under that stream's node and forgets it when that node goes.
-module(consult_agents).

-export([sm_register_connection_hook/3, sm_remove_connection_hook/3, set_presence_hook/4,
         unset_presence_hook/4, report_agents/2, local_sessions/2]).

-include("xmpp.hrl").

-spec sm_register_connection_hook(ejabberd_sm:sid(), jid(), ejabberd_sm:info()) -> ok.
sm_register_connection_hook(_SID, JID, _Info) ->
    notify_agent(JID, #{kind => session_open}).

-spec sm_remove_connection_hook(ejabberd_sm:sid(), jid(), ejabberd_sm:info()) -> ok.
sm_remove_connection_hook(_SID, JID, _Info) ->
    notify_agent(JID, #{kind => session_close}).

-spec set_presence_hook(binary(), binary(), binary(), presence()) -> ok.
set_presence_hook(User, Server, Resource, Presence) ->
    notify_agent(jid:make(User, Server, Resource), presence_set(Presence)).

presence_set(#presence{show = Show, priority = Prio, status = Status}) ->
    #{kind => presence_set, show => show(Show), priority => priority(Prio),
      status => xmpp:get_text(Status)}.

-spec unset_presence_hook(binary(), binary(), binary(), binary()) -> ok.
unset_presence_hook(User, Server, Resource, Status) ->
    notify_agent(jid:make(User, Server, Resource), #{kind => presence_unset, status => Status}).

%% To every sidecar: each keeps the presence of all agents.
notify_agent(#jid{} = JID, Event) ->
    case consult_grpc:watched(agent, consult_stanza:bare(JID)) of
        true -> consult_grpc:notify(Event#{jid => jid:encode(JID)});
        false -> ok
    end;
notify_agent(_, _) ->
    ok.

%% After (re)connecting a sidecar knows nothing of who is online: report the
%% sessions and presence on this node of the agents it watches to it (and,
%% later, of those its watch list adds; and all again when it asks).
-spec report_agents(atom(), [binary()]) -> ok.
report_agents(Conn, Agents) ->
    lists:foreach(fun(Bare) -> report_agent(Conn, Bare) end, Agents).

report_agent(Conn, Bare) ->
    #jid{luser = U, lserver = S} = jid:decode(Bare),
    Sessions = [{R, ejabberd_sm:get_session_pid(U, S, R)} || R <- ejabberd_sm:get_user_resources(U, S)],
    lists:foreach(
      fun({R, Pid}) ->
              JID = jid:encode(jid:make(U, S, R)),
              consult_grpc:notify(Conn, #{kind => session_open, jid => JID}),
              case catch ejabberd_c2s:get_presence(Pid) of
                  #presence{type = available} = P -> consult_grpc:notify(Conn, (presence_set(P))#{jid => JID});
                  _ -> ok
              end
      end, local_sessions(node(), Sessions)).

%% The sessions whose process runs on Node; a resource whose session is gone
%% by now (no pid) is left out too.
-spec local_sessions(node(), [{binary(), pid() | none}]) -> [{binary(), pid()}].
local_sessions(Node, Sessions) ->
    [{R, Pid} || {R, Pid} <- Sessions, is_pid(Pid), node(Pid) =:= Node].

show(undefined) -> <<>>;
show(Show) -> atom_to_binary(Show, utf8).

priority(undefined) -> 0;
priority(P) -> P.
